"""Reference of the associative-embedding grouping op: HigherHRNet's parser in numpy + scipy.

Written from the step-by-step description of upstream's `HeatmapParser` (HigherHRNet
lib/core/group.py, derived from pose-ae-train). It is the oracle the compiled op is tested
against and the baseline its benchmark is measured against, so it keeps upstream's structure and
cost: per-image Python matching, a numpy distance matrix per joint type, and a refine that
computes the full-map score of every joint type for every person.

Upstream behaviour reproduced exactly:

* joint types are visited in ``joint_order`` (default: upstream's COCO order truncated to J, see
  :func:`default_joint_order`); candidates are the peaks with value > detection_threshold
  (compared in float64, as upstream's float64 joint rows do);
* the first joint type with candidates starts one person per candidate;
* persons are keyed by the first tag component of the candidate that started them, and upstream's
  key-collision quirk is kept: a candidate that starts a "new" person whose key equals an
  existing person's key is written into that existing person (its slot for this joint type is
  overwritten and its tag list restarts from this candidate's tag); the person keeps its place;
* only the first ``max_people`` persons (insertion order) take part in matching; persons are not
  capped (new ones keep being created); with ``ignore_too_much`` a joint type is skipped once
  ``max_people`` persons exist;
* distance = L2 norm over the T tag dimensions between a candidate's tag and a person's mean
  tag; cost = ``round(dist) * 100 - value`` (round half to even, numpy's rule) with
  ``use_detection_val``, else ``dist``; columns of ``1e10`` pad the matrix to square when there
  are more candidates than persons; a candidate joins its assigned person iff the column is a
  real person and the *unrounded* distance < tag_threshold, otherwise it starts a new person;
* adjust: a joint with value > 0 moves a quarter pixel toward the larger horizontal / vertical
  neighbour (ties and borders: -0.25, neighbours clamped), then +0.5;
* score = float32 mean of the value column over all J joints, after adjust and before refine;
* refine: person tag = mean of the tag maps at the integer positions of its joints with value
  > 0; for each joint type, the first (row-major) maximum of
  ``det - round(||tag(pixel) - person tag||)`` (float32) gives a pixel; a joint is filled only
  if it is missing (value == 0) and the pixel's value is > 0, at pixel + 0.5 with the quarter
  offset rule. Existing joints never move; filled joints keep zero tags.

Decisions where upstream is unspecified or fragile (the compiled op follows the same ones):

* assignment ties follow ``scipy.optimize.linear_sum_assignment`` (upstream used ``munkres``;
  both are optimal, they can differ only when several assignments share the optimal cost);
* peaks come from the heatmap-peaks op's contract: ranked by value, ties by lower flat index;
* a person's mean tag is a float64 running sum of its float32 tags divided by the count
  (upstream: a float32 numpy mean); the refine tag is the same float64 mean rounded to float32;
  this can matter only when a distance lies within ~1e-6 of a .5 rounding boundary or of the
  tag threshold;
* refine runs on every image of the batch (upstream refines only image 0 and returns scores of
  image 0 only; its test batch size is 1);
* refine skips a person none of whose joints has value > 0 (possible only with a negative
  detection threshold; upstream would take the mean of nothing, NaN) or whose refine tag is not
  finite; NaN scores in the refine map never win (treated as -inf);
* a candidate (value > threshold) whose value or tags are not finite is an error (upstream's
  assignment would fail on the NaN/-inf cost).
"""
import numpy as np
import torch
import torch.nn.functional as F

# The visiting order is defined in ..joint_order; the names stay importable from this module.
from ..joint_order import COCO_JOINT_ORDER, default_joint_order  # noqa: F401


def scipy_assignment(cost):
    """scipy's solver, imported on first use so that importing this module needs no scipy: the
    package does not depend on it (only this reference and the tests do)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)


def top_k(heatmaps, tags, kernel, k):
    """Upstream's top_k with the heatmap-peaks op's contract: a pixel survives if it equals the
    max-pool (kernel, stride 1, padding kernel // 2) of its map (NaN never survives nor
    suppresses); `torch.topk` picks the k best survivors, and survivors tied with the k-th value
    are ordered by lower flat index (upstream left that order to topk). Same output as
    ``heatmap_peaks(heatmaps, tags, kernel, k)``; unfilled slots: value -inf, x = y = -1, zero tags.
    (Upstream zeroes non-peaks and ranks them too; they never pass a non-negative detection
    threshold, so the candidates are the same.)"""
    n, j, h, w = heatmaps.shape
    t = tags.shape[4]
    det = heatmaps.detach().cpu().to(torch.float32)
    nan = torch.isnan(det)
    pooled = F.max_pool2d(det.masked_fill(nan, float("-inf")), kernel, stride=1, padding=kernel // 2)
    is_peak = (det == pooled) & ~nan
    key = det.masked_fill(~is_peak, float("-inf")).reshape(n, j, h * w)
    m = min(k, h * w)
    kth = torch.topk(key, m, dim=2).values[..., -1:]  # k-th best survivor value per map
    flat_det = det.reshape(n, j, h * w).numpy()
    flat_peak = is_peak.reshape(n, j, h * w).numpy()
    flat_tags = tags.detach().cpu().to(torch.float32).reshape(n, j, h * w, t).numpy()
    above = (key >= kth).numpy() & flat_peak
    values = np.full((n, j, k), -np.inf, np.float32)
    xs = np.full((n, j, k), -1, np.int64)
    ys = np.full((n, j, k), -1, np.int64)
    peak_tags = np.zeros((n, j, k, t), np.float32)
    for a in range(n):
        for b in range(j):
            idx = np.nonzero(above[a, b])[0]
            idx = idx[np.argsort(-flat_det[a, b, idx], kind="stable")][:k]
            values[a, b, :len(idx)] = flat_det[a, b, idx]
            xs[a, b, :len(idx)] = idx % w
            ys[a, b, :len(idx)] = idx // w
            peak_tags[a, b, :len(idx)] = flat_tags[a, b, idx]
    return values, xs, ys, peak_tags


def _check_candidates(values, tags, keep, n, j):
    if not (np.all(np.isfinite(values[keep])) and np.all(np.isfinite(tags[keep]))):
        raise ValueError(f"ae_group: a peak above the detection threshold has a non-finite value or tag "
                         f"(image {n}, joint {j})")


def match_by_tag(values, xs, ys, peak_tags, joint_order, detection_threshold, tag_threshold,
                 use_detection_val, ignore_too_much, max_people, image_index=0):
    """Group one image's peaks into persons. Returns a float32 array (P, J, 3 + T).

    values, xs, ys: (J, K); peak_tags: (J, K, T) (numpy). Rows are (x, y, value, tags...).
    """
    num_joints, _, t = peak_tags.shape
    persons = {}  # key (first tag component) -> {"pose", "tag_sum", "count"}; insertion-ordered

    def start_person(row, tag):
        key = float(tag[0])
        person = persons.setdefault(key, {"pose": np.zeros((num_joints, 3 + t))})
        person["pose"][joint] = row
        person["tag_sum"] = tag.astype(np.float64)  # the overwrite quirk restarts the tag list
        person["count"] = 1

    for step, joint in enumerate(joint_order):
        keep = values[joint].astype(np.float64) > detection_threshold
        if not keep.any():
            continue
        _check_candidates(values[joint], peak_tags[joint], keep, image_index, joint)
        tags = peak_tags[joint][keep]
        rows = np.concatenate([xs[joint][keep, None].astype(np.float64), ys[joint][keep, None].astype(np.float64),
                               values[joint][keep, None].astype(np.float64), tags.astype(np.float64)], axis=1)

        if step == 0 or not persons:
            for row, tag in zip(rows, tags):
                start_person(row, tag)
            continue

        grouped = list(persons.values())[:max_people]
        if ignore_too_much and len(grouped) == max_people:
            continue
        means = np.stack([p["tag_sum"] / p["count"] for p in grouped])  # (G, T) float64
        diff = rows[:, None, 3:] - means[None, :, :]
        sq = diff[..., 0] * diff[..., 0]
        for k in range(1, t):
            sq = sq + diff[..., k] * diff[..., k]
        dist = np.sqrt(sq)
        cost = np.round(dist) * 100 - rows[:, 2:3] if use_detection_val else dist.copy()
        num_added, num_grouped = cost.shape
        if num_added > num_grouped:
            cost = np.concatenate([cost, np.full((num_added, num_added - num_grouped), 1e10)], axis=1)
        row_ind, col_ind = scipy_assignment(cost)
        for r, c in zip(row_ind, col_ind):
            if c < num_grouped and dist[r, c] < tag_threshold:
                person = grouped[c]
                person["pose"][joint] = rows[r]
                person["tag_sum"] = person["tag_sum"] + tags[r].astype(np.float64)
                person["count"] += 1
            else:
                start_person(rows[r], tags[r])

    if not persons:
        return np.zeros((0, num_joints, 3 + t), np.float32)
    return np.stack([p["pose"] for p in persons.values()]).astype(np.float32)


def adjust_poses(poses, det):
    """Quarter-pixel adjust of every joint with value > 0, in place. det: (J, H, W) float32."""
    if poses.shape[0] == 0:
        return poses
    h, w = det.shape[1:]
    p_idx, j_idx = np.nonzero(poses[:, :, 2] > 0)
    x = poses[p_idx, j_idx, 0]
    y = poses[p_idx, j_idx, 1]
    xi, yi = x.astype(np.int64), y.astype(np.int64)
    right = det[j_idx, yi, np.minimum(xi + 1, w - 1)]
    left = det[j_idx, yi, np.maximum(xi - 1, 0)]
    down = det[j_idx, np.minimum(yi + 1, h - 1), xi]
    up = det[j_idx, np.maximum(yi - 1, 0), xi]
    quarter = np.float32(0.25)
    x = x + np.where(right > left, quarter, -quarter)
    y = y + np.where(down > up, quarter, -quarter)
    poses[p_idx, j_idx, 0] = x + np.float32(0.5)
    poses[p_idx, j_idx, 1] = y + np.float32(0.5)
    return poses


def refine_person(det, tag, pose):
    """Fill the missing joints of one person from the full maps, in place (upstream's cost:
    the score map of every joint type is computed, only missing joints are filled).

    det: (J, H, W) float32; tag: (J, H, W, T) float32; pose: (J, 3 + T) float32.
    """
    num_joints, h, w = det.shape
    t = tag.shape[3]
    present = np.nonzero(pose[:, 2] > 0)[0]
    if present.size == 0:
        return pose
    tag_sum = np.zeros(t, np.float64)
    for j in present:
        x, y = pose[j, :2].astype(np.int32)
        tag_sum = tag_sum + tag[j, y, x].astype(np.float64)
    person_tag = (tag_sum / present.size).astype(np.float32)
    if not np.all(np.isfinite(person_tag)):
        return pose
    found = []
    for j in range(num_joints):
        # upstream's formulation (and cost); for T < 8 numpy sums the T squares in order and
        # `** 0.5` is a square root, as in the compiled kernels
        dist = ((tag[j] - person_tag[None, None, :]) ** 2).sum(axis=2) ** 0.5
        score = det[j] - np.round(dist)
        score[np.isnan(score)] = -np.inf
        y, x = divmod(int(np.argmax(score)), w)
        m = det[j]
        fx = x + 0.5 + (0.25 if m[y, min(x + 1, w - 1)] > m[y, max(x - 1, 0)] else -0.25)
        fy = y + 0.5 + (0.25 if m[min(y + 1, h - 1), x] > m[max(y - 1, 0), x] else -0.25)
        found.append((fx, fy, m[y, x]))
    for j, (fx, fy, val) in enumerate(found):
        if val > 0 and pose[j, 2] == 0:
            pose[j, 0], pose[j, 1], pose[j, 2] = fx, fy, val
    return pose


def parse(heatmaps, tags, peaks=None, *, joint_order=None, nms_kernel=5, max_people=30,
          detection_threshold=0.1, tag_threshold=1.0, use_detection_val=True, ignore_too_much=False,
          adjust=True, refine=True):
    """Upstream's parse over a batch. Returns (list of (P, J, 3+T) float32 arrays, list of (P,)
    float32 score arrays), one entry per image."""
    n, num_joints = heatmaps.shape[:2]
    if joint_order is None:
        joint_order = default_joint_order(num_joints)
    if peaks is None:
        peaks = top_k(heatmaps, tags, nms_kernel, max_people)
    values, xs, ys, peak_tags = (p.detach().cpu().numpy() if torch.is_tensor(p) else p for p in peaks)
    values = values.astype(np.float32)
    peak_tags = peak_tags.astype(np.float32)
    det = heatmaps.detach().cpu().to(torch.float32).numpy()
    tag = tags.detach().cpu().to(torch.float32).numpy()
    all_poses, all_scores = [], []
    for i in range(n):
        poses = match_by_tag(values[i], xs[i], ys[i], peak_tags[i], joint_order, detection_threshold,
                             tag_threshold, use_detection_val, ignore_too_much, max_people, i)
        if adjust:
            adjust_poses(poses, det[i])
        scores = np.array([p[:, 2].mean() for p in poses], np.float32)
        if refine:
            for p in poses:
                refine_person(det[i], tag[i], p)
        all_poses.append(poses)
        all_scores.append(scores)
    return all_poses, all_scores


def ae_group(heatmaps, tags, peaks=None, **kwargs):
    """Same contract as :func:`higherpose.ops.ae_group`: (poses [N, P, J, 3+T] float32,
    scores [N, P] float32, counts [N] int64), padded with zeros, on the CPU."""
    poses, scores = parse(heatmaps, tags, peaks, **kwargs)
    n, num_joints = heatmaps.shape[:2]
    t = tags.shape[4]
    p_max = max((len(p) for p in poses), default=0)
    out = np.zeros((n, p_max, num_joints, 3 + t), np.float32)
    out_scores = np.zeros((n, p_max), np.float32)
    for i, (p, s) in enumerate(zip(poses, scores)):
        out[i, :len(p)] = p
        out_scores[i, :len(s)] = s
    counts = torch.tensor([len(p) for p in poses], dtype=torch.long)
    return torch.from_numpy(out), torch.from_numpy(out_scores), counts


def planted_maps(num_people, num_joints=14, size=128, num_tags=1, *, num_images=1, seed=0, sigma=2.0,
                 missing=0.0, tag_gap=2.0, close_pairs=0, tag_noise=0.02, background=0.02):
    """Synthetic network outputs with known persons, for tests and benchmarks.

    Persons sit on a grid of square cells, one per cell (joints spread inside the cell); every
    joint is a Gaussian blob (sigma, peak value in [0.5, 1)) on its joint's heatmap; heatmaps get
    uniform background noise in [0, background). Tag maps hold, in every person's cell, that
    person's tag (tags ``tag_gap`` apart, plus Gaussian noise ``tag_noise``), elsewhere random
    tags; further tag maps (T > 1) add noise to the first one. ``missing`` drops that fraction of
    joints; ``close_pairs`` gives that many pairs of neighbouring persons tags only 0.4 apart.

    Returns (heatmaps [N, J, H, W], tags [N, J, H, W, T]) float32 tensors.
    """
    rng = np.random.default_rng(seed)
    h = w = size
    det = rng.uniform(0, background, (num_images, num_joints, h, w)).astype(np.float32)
    tag = rng.normal(0, 4 * tag_gap, (num_images, num_joints, h, w)).astype(np.float32)
    grid = max(1, int(np.ceil(np.sqrt(num_people))))
    cell = size / grid
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for n in range(num_images):
        person_tags = tag_gap * (1 + rng.permutation(num_people)) + rng.uniform(-0.05, 0.05, num_people)
        for pair in range(close_pairs):
            a, b = 2 * pair, 2 * pair + 1
            if b < num_people:
                person_tags[b] = person_tags[a] + 0.4
        for p in range(num_people):
            cy, cx = divmod(p, grid)
            y0, x0 = int(cy * cell), int(cx * cell)
            y1, x1 = int((cy + 1) * cell), int((cx + 1) * cell)
            tag[n, :, y0:y1, x0:x1] = person_tags[p] + rng.normal(0, tag_noise, (num_joints, y1 - y0, x1 - x0))
            for j in range(num_joints):
                if rng.random() < missing:
                    continue
                jy = rng.uniform(y0 + 0.15 * cell, y1 - 0.15 * cell)
                jx = rng.uniform(x0 + 0.15 * cell, x1 - 0.15 * cell)
                blob = rng.uniform(0.5, 1.0) * np.exp(-((yy - jy) ** 2 + (xx - jx) ** 2) / (2 * sigma ** 2))
                np.maximum(det[n, j], blob, out=det[n, j])
    tags = tag[..., None]
    if num_tags > 1:
        extra = [tag + rng.normal(0, 0.05, tag.shape).astype(np.float32) for _ in range(num_tags - 1)]
        tags = np.stack([tag] + extra, axis=-1)
    return torch.from_numpy(det), torch.from_numpy(np.ascontiguousarray(tags, dtype=np.float32))
