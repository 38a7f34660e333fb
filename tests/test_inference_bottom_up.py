"""Bottom-up inference: sizes, map aggregation against an independent re-implementation of
upstream's test pipeline, and the geometry back to the image."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from higherpose.inference import BottomUpInference, BottomUpSettings, multi_scale_size

J = 14
FLIP = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13]


# ----------------------------------------------------------------------------- sizes
def test_multi_scale_size_hand_worked():
    # portrait 795x1000 at 512: short side 512, long side ceil64(512/795*1000 = 644.03) = 704
    size, center, scale = multi_scale_size(795, 1000, 512, 1.0, 1.0)
    assert size == (512, 704)
    assert tuple(center) == (398, 500)
    assert scale == pytest.approx([3.975, 704 / 512 * 3.975])
    # landscape 1000x600: long side ceil64(853.3) = 896
    size, center, scale = multi_scale_size(1000, 600, 512, 1.0, 1.0)
    assert size == (896, 512)
    assert scale == pytest.approx([896 / 512 * 3.0, 3.0])
    # multi-scale [0.5, 1, 2]: min input ceil64(256) = 256; at s = 2: 256*4 = 1024 and ceil64(322.0)*4 = 1536
    assert multi_scale_size(795, 1000, 512, 2.0, 0.5)[0] == (1024, 1536)
    assert multi_scale_size(795, 1000, 512, 1.0, 0.5)[0] == (512, 768)
    with pytest.raises(ValueError):
        multi_scale_size(0, 10, 512, 1.0, 1.0)


# ----------------------------------------------------------------------------- a tiny two-stage model
class TinyTwoStage(nn.Module):
    """Two outputs like HigherHRNet: [B, 2J, H/4, W/4] (heatmaps + tags) and [B, J, H/2, W/2]."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.s0 = nn.Conv2d(3, 2 * J, 4, stride=4)
        self.s1 = nn.Conv2d(3, J, 2, stride=2)

    def forward(self, x):
        return [self.s0(x), self.s1(x)]


def _upstream_size(w, h, input_size, s, min_scale):
    """Independent re-statement of upstream's get_multi_scale_size."""
    mi = int((min_scale * input_size + 63) // 64 * 64)
    if w < h:
        wr = int(mi * s / min_scale)
        hr = int(int((mi / w * h + 63) // 64 * 64) * s / min_scale)
        sc = (w / 200.0, hr / wr * w / 200.0)
    else:
        hr = int(mi * s / min_scale)
        wr = int(int((mi / h * w + 63) // 64 * 64) * s / min_scale)
        sc = (wr / hr * h / 200.0, h / 200.0)
    return (wr, hr), np.array([int(w / 2 + 0.5), int(h / 2 + 0.5)], float), np.array(sc)


def _upstream_affine(center, scale, out_size):
    """Three-point construction as upstream's get_affine_transform (rotation 0)."""
    src_w = scale[0] * 200.0
    dst_w, dst_h = out_size
    src = np.float32([center, center + [0, -src_w * 0.5], center + [-src_w * 0.5, -src_w * 0.5] + [src_w * 0.5, 0]])
    dst = np.float32([[dst_w * 0.5, dst_h * 0.5], [dst_w * 0.5, dst_h * 0.5 - dst_w * 0.5], [0, 0]])
    # third points: rotate (p1 - p0) by 90 degrees around p1
    src[2] = src[1] + np.float32([-(src[0][1] - src[1][1]), src[0][0] - src[1][0]])
    dst[2] = dst[1] + np.float32([-(dst[0][1] - dst[1][1]), dst[0][0] - dst[1][0]])
    return cv2.getAffineTransform(src, dst)


def _reference_maps(model, image, scales, flip, project, input_size=512):
    """Per image, batch 1, written from the upstream description (reference sheet §6)."""
    min_scale = min(scales)
    base_size = _upstream_size(image.shape[1], image.shape[0], input_size, 1.0, min_scale)[0]
    final, tags = None, None
    for s in sorted(scales, reverse=True):
        size, center, scale = _upstream_size(image.shape[1], image.shape[0], input_size, s, min_scale)
        warped = cv2.warpAffine(image, _upstream_affine(center, scale, size), size)
        rgb = warped[:, :, ::-1].astype(np.float32) / 255.0
        x = torch.from_numpy(((rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).astype(np.float32))
        x = x.permute(2, 0, 1)[None]

        def run(inp):
            o0, o1 = model(inp)
            o0 = F.interpolate(o0, size=o1.shape[-2:], mode="bilinear", align_corners=False)
            return (o0[:, :J] + o1[:, :J]) / 2.0, o0[:, J:]

        hm, tg = run(x)
        tag_list = [tg]
        if flip:
            hf, tf = run(torch.flip(x, [3]))
            hm = (hm + torch.flip(hf, [3])[:, FLIP]) / 2.0
            tag_list.append(torch.flip(tf, [3])[:, FLIP])
        if project:
            hm = F.interpolate(hm, size=(base_size[1], base_size[0]), mode="bilinear", align_corners=False)
            tag_list = [F.interpolate(t, size=(base_size[1], base_size[0]), mode="bilinear", align_corners=False)
                        for t in tag_list]
        elif final is not None:
            hm = F.interpolate(hm, size=final.shape[-2:], mode="bilinear", align_corners=False)
        final = hm if final is None else final + hm
        if s == 1.0 or len(scales) == 1:
            tags = tag_list
    tags = [F.interpolate(t, size=final.shape[-2:], mode="bilinear", align_corners=False) for t in tags]
    return final / len(scales), torch.stack(tags, dim=4)


def _settings(**kw):
    base = dict(num_joints=J, flip_index=FLIP, input_size=128, scale_factors=(1.0,), flip_test=True,
                project2image=True)
    base.update(kw)
    return BottomUpSettings(**base)


@pytest.mark.parametrize("scales,flip,project", [((1.0,), True, True), ((1.0,), False, False),
                                                 ((2.0, 1.0, 0.5), True, True), ((1.0, 0.5), True, False)])
def test_maps_match_reference(scales, flip, project):
    model = TinyTwoStage().eval()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (150, 100, 3), dtype=np.uint8), rng.integers(0, 255, (150, 101, 3), dtype=np.uint8)]
    inf = BottomUpInference(model, _settings(scale_factors=scales, flip_test=flip, project2image=project))
    heat, tags, centers, scales_out = inf.maps(images)  # same resized size -> one batch
    for b, im in enumerate(images):
        ref_h, ref_t = _reference_maps(model, im, scales, flip, project, input_size=128)
        assert heat.shape[1:] == ref_h.shape[1:]
        torch.testing.assert_close(heat[b:b + 1], ref_h, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(tags[b:b + 1], ref_t, atol=1e-4, rtol=1e-4)
        assert tags.shape[-1] == (2 if flip else 1)


# ----------------------------------------------------------------------------- geometry, end to end
class BrightnessModel(nn.Module):
    """Heatmaps = local brightness at 1/4 and 1/2 resolution, tags 0: the peak sits on the bright dot."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        b = x.mean(1, keepdim=True) + self.dummy
        s0 = F.avg_pool2d(b, 4)
        s1 = F.avg_pool2d(b, 2)
        return [torch.cat([s0.expand(-1, J, -1, -1), torch.zeros_like(s0).expand(-1, J, -1, -1)], 1),
                s1.expand(-1, J, -1, -1)]


def argmax_parser(heatmaps, tags, s):
    """Stand-in grouping: one person per image, every joint at its map's argmax (+0.5, pixel centre)."""
    n, j, h, w = heatmaps.shape
    val, idx = heatmaps.flatten(2).max(2)
    x = (idx % w).float() + 0.5
    y = torch.div(idx, w, rounding_mode="floor").float() + 0.5
    poses = torch.stack([x, y, val], -1)[:, None]
    poses = torch.cat([poses, torch.zeros(n, 1, j, tags.shape[-1])], -1)
    return poses, val.mean(1, keepdim=True), torch.ones(n, dtype=torch.long)


@pytest.mark.parametrize("hw,scales", [((300, 200), (1.0,)), ((180, 320), (1.0,)), ((300, 200), (1.0, 0.5))])
def test_coordinates_map_back_to_the_image(hw, scales):
    h, w = hw
    dots = [(37, 51), (w - 30, h - 40), (w // 2, h // 3)]
    images = []
    for dx, dy in dots:
        im = np.zeros((h, w, 3), np.uint8)
        cv2.circle(im, (dx, dy), 3, (255, 255, 255), -1)
        images.append(im)
    inf = BottomUpInference(BrightnessModel(), _settings(scale_factors=scales), parser=argmax_parser)
    results = inf.predict(images)
    factor = max(w, h) / 128.0  # one input pixel in image pixels (upper bound)
    for (dx, dy), (poses, scores) in zip(dots, results):
        assert poses.shape == (1, J, 3)
        assert np.abs(poses[0, :, 0] - dx).max() <= 1.5 * factor, poses[0, :, :2]
        assert np.abs(poses[0, :, 1] - dy).max() <= 1.5 * factor, poses[0, :, :2]
    assert inf.timer.images == 3 and inf.timer.model > 0 and inf.timer.post > 0


def test_mixed_sizes_and_single_image():
    inf = BottomUpInference(BrightnessModel(), _settings(), parser=argmax_parser)
    a = np.zeros((100, 140, 3), np.uint8)
    b = np.zeros((200, 100, 3), np.uint8)
    out = inf.predict([a, b, a])
    assert len(out) == 3 and all(o[0].shape == (1, J, 3) for o in out)
    single = inf.predict(a)
    assert isinstance(single, tuple) and single[0].shape == (1, J, 3)


def test_bad_inputs_are_named():
    inf = BottomUpInference(BrightnessModel(), _settings(), parser=argmax_parser)
    with pytest.raises(ValueError, match="uint8"):
        inf.predict([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="flip_index"):
        BottomUpInference(BrightnessModel(), _settings(flip_index=list(range(J - 1))))
    with pytest.raises(ValueError, match="1.0"):
        BottomUpInference(BrightnessModel(), _settings(scale_factors=(0.5, 2.0)))
