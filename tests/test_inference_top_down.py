"""Top-down decoding: flip with the one-pixel shift, argmax + quarter offset, OKS-NMS, rescoring."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from higherpose.inference.top_down import decode_heatmaps, oks_nms, rescore, top_down_heatmaps


class Pool4(nn.Module):
    """J = 2 maps: the crop's red channel and its green channel, pooled by 4."""

    def forward(self, x):
        return F.avg_pool2d(x[:, :2], 4)


def test_flip_test_with_shift():
    torch.manual_seed(0)
    crops = torch.rand(2, 3, 32, 24)
    model = Pool4()
    plain = model(crops)
    flipped_back = torch.flip(model(torch.flip(crops, [3])), [3])[:, [1, 0]]  # swap the two joints
    shifted = flipped_back.clone()
    shifted[..., 1:] = flipped_back[..., :-1]
    expect = (plain + shifted) / 2
    got = top_down_heatmaps(model, crops, flip_index=[1, 0])
    torch.testing.assert_close(got, expect)
    torch.testing.assert_close(top_down_heatmaps(model, crops, flip_test=False), plain)
    with pytest.raises(ValueError, match="flip_index"):
        top_down_heatmaps(model, crops, flip_index=None)


def test_decode_quarter_offset_and_transform():
    hm = np.zeros((1, 3, 8, 6))
    hm[0, 0, 4, 3] = 1.0
    hm[0, 0, 4, 4] = 0.5      # right neighbour larger -> +0.25 x
    hm[0, 0, 3, 3] = 0.2      # upper neighbour larger -> -0.25 y
    hm[0, 1, 0, 0] = 0.7      # on the border: no offset
    # joint 2 all zero: coordinates (0, 0), score 0
    center = np.array([[100.0, 50.0]])
    scale = np.array([[0.06, 0.08]])  # 12 x 16 px box -> factor 2 px per heatmap pixel
    preds, maxvals = decode_heatmaps(hm, center, scale)
    # x = 3.25 * 2 + 100 - 6 = 100.5; y = 3.75 * 2 + 50 - 8 = 49.5
    np.testing.assert_allclose(preds[0, 0], [100.5, 49.5])
    np.testing.assert_allclose(preds[0, 1], [94.0, 42.0])
    np.testing.assert_allclose(preds[0, 2], [94.0, 42.0])
    np.testing.assert_allclose(maxvals[0, :, 0], [1.0, 0.7, 0.0])


def test_oks_nms_and_rescore():
    sig = np.full(3, 0.1)
    a = np.array([[10, 10, 1], [20, 10, 1], [15, 30, 1]], float)
    near = a + [0.5, 0.5, 0]
    far = a + [200, 0, 0]
    kps = np.stack([near, a, far])
    keep = oks_nms(kps, [0.5, 0.9, 0.7], [400.0, 400.0, 400.0], 0.9, sig)
    assert keep == [1, 2]  # the near duplicate with the lower score goes
    assert oks_nms(kps, [0.5, 0.9, 0.7], [400.0] * 3, 1.0, sig) == [1, 2, 0]
    s = rescore(np.array([[0.1, 0.5, 0.9], [0.1, 0.1, 0.1]]), [0.5, 1.0], 0.2)
    np.testing.assert_allclose(s, [0.35, 0.0])
