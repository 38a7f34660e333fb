"""The bottom-up pipeline's post-processing with the real grouping (compiled op and the numpy
reference): planted people come back at their image positions, one person each."""
import numpy as np
import pytest
import torch

from higherpose.inference import BottomUpInference, BottomUpSettings

J = 14
FLIP = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13]


def planted(h=96, w=128, people=((30, 40), (90, 50), (60, 20))):
    """Maps with one Gaussian per person and joint (joints spread around the person's anchor),
    and tags equal to 2 * person index around each joint."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    heat = np.zeros((1, J, h, w))
    tags = np.zeros((1, J, h, w, 2))
    best = np.full((J, h, w), np.inf)
    truth = np.zeros((len(people), J, 2))
    for p, (ax, ay) in enumerate(people):
        for j in range(J):
            x = ax + int(rng.integers(-8, 9))
            y = ay + int(rng.integers(-8, 9))
            truth[p, j] = (x, y)
            d2 = (xx - x) ** 2 + (yy - y) ** 2
            heat[0, j] = np.maximum(heat[0, j], np.exp(-d2 / 8.0))
            closer = d2 < best[j]
            best[j] = np.where(closer, d2, best[j])
            tags[0, j][closer] = 2.0 * p
    return torch.tensor(heat, dtype=torch.float32), torch.tensor(tags, dtype=torch.float32), truth


@pytest.mark.parametrize("parser", ["op", "reference"])
def test_planted_people_come_back(parser):
    settings = BottomUpSettings(num_joints=J, flip_index=FLIP, input_size=128)
    inf = BottomUpInference(torch.nn.Identity(), settings, parser=parser)
    heat, tags, truth = planted()
    # maps refer to a 128x96 input made from a 256x192 image (factor 2), centre (128, 96)
    center = np.array([[128.0, 96.0]])
    scale = np.array([[256 / 200.0, 192 / 200.0]])
    (poses, scores), = inf.postprocess(heat, tags, center, scale)
    assert poses.shape == (3, J, 3) and scores.shape == (3,)
    assert np.all(poses[:, :, 2] > 0.9) and np.all(scores > 0.9)
    # map pixel (x, y) has its centre at x + 0.5 -> image 2 * (x + 0.5)
    expect = 2.0 * (truth + 0.5)
    order = np.argsort(poses[:, 0, 0])
    got = poses[order, :, :2]
    exp = expect[np.argsort(expect[:, 0, 0])]
    np.testing.assert_allclose(got, exp, atol=2 * 0.25 + 1e-6)  # quarter-pixel adjust, times 2


def test_op_and_reference_agree_through_the_pipeline():
    settings = BottomUpSettings(num_joints=J, flip_index=FLIP, input_size=128)
    heat, tags, _ = planted()
    heat = heat + 0.05 * torch.rand(heat.shape, generator=torch.Generator().manual_seed(1))
    center, scale = np.array([[64.0, 48.0]]), np.array([[128 / 200.0, 96 / 200.0]])
    a = BottomUpInference(torch.nn.Identity(), settings, parser="op").postprocess(heat, tags, center, scale)
    b = BottomUpInference(torch.nn.Identity(), settings, parser="reference").postprocess(heat, tags, center, scale)
    np.testing.assert_allclose(a[0][0], b[0][0], atol=1e-5)
    np.testing.assert_allclose(a[0][1], b[0][1], atol=1e-6)


@pytest.mark.cuda
def test_pipeline_on_cuda_matches_cpu():
    """Maps and poses computed on the GPU equal the CPU ones (model, aggregation and grouping on the device)."""
    from test_inference_bottom_up import TinyTwoStage

    settings = BottomUpSettings(num_joints=J, flip_index=FLIP, input_size=128)
    model = TinyTwoStage().eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (150, 100, 3), dtype=np.uint8)]
    cpu = BottomUpInference(model, settings)
    gpu = BottomUpInference(TinyTwoStage().eval().cuda(), settings)
    h_cpu, t_cpu, c, s = cpu.maps(images)
    h_gpu, t_gpu, _, _ = gpu.maps(images)
    assert h_gpu.is_cuda and t_gpu.is_cuda
    torch.testing.assert_close(h_gpu.cpu(), h_cpu, atol=1e-3, rtol=1e-3)
    heat, tags, _ = planted()
    a = cpu.postprocess(heat, tags, c, s)
    b = gpu.postprocess(heat.cuda(), tags.cuda(), c, s)
    np.testing.assert_allclose(b[0][0], a[0][0], atol=1e-4)
    np.testing.assert_allclose(b[0][1], a[0][1], atol=1e-5)
