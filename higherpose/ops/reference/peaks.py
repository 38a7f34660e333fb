"""Reference of the heatmap-peaks op: max-pool equality mask, stable sort, gather."""
import torch
import torch.nn.functional as F


def heatmap_peaks(heatmaps, tags, kernel=5, k=30):
    """Same contract as :func:`higherpose.ops.heatmap_peaks`, composed from PyTorch ops."""
    n, j, h, w = heatmaps.shape
    t = tags.shape[4]
    values = heatmaps.new_full((n, j, k), float("-inf"))
    xs = torch.full((n, j, k), -1, dtype=torch.long, device=heatmaps.device)
    ys = torch.full_like(xs, -1)
    peak_tags = tags.new_zeros((n, j, k, t))
    if n * j == 0 or h * w == 0:
        return values, xs, ys, peak_tags

    nan = torch.isnan(heatmaps)
    finite_or_inf = heatmaps.masked_fill(nan, float("-inf"))  # NaN never suppresses a neighbour
    pooled = F.max_pool2d(finite_or_inf, kernel, stride=1, padding=kernel // 2)
    is_peak = (finite_or_inf == pooled) & ~nan

    flat_val = heatmaps.reshape(n, j, h * w)
    flat_peak = is_peak.reshape(n, j, h * w)
    # Order: peaks first, then by value (descending), then by flat index (stable sorts).
    key = flat_val.masked_fill(~flat_peak, float("-inf"))
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    order = order.gather(-1, torch.sort(flat_peak.gather(-1, order).to(torch.uint8), dim=-1,
                                        descending=True, stable=True).indices)
    m = min(k, h * w)
    top = order[..., :m]
    top_is_peak = flat_peak.gather(-1, top)
    top_val = flat_val.gather(-1, top)
    top_tags = tags.reshape(n, j, h * w, t).gather(2, top.unsqueeze(-1).expand(n, j, m, t))

    values[..., :m] = torch.where(top_is_peak, top_val, values[..., :m])
    xs[..., :m] = torch.where(top_is_peak, top % w, xs[..., :m])
    ys[..., :m] = torch.where(top_is_peak, top // w, ys[..., :m])
    peak_tags[..., :m, :] = torch.where(top_is_peak.unsqueeze(-1), top_tags, peak_tags[..., :m, :])
    return values, xs, ys, peak_tags
