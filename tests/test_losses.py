"""Losses against straightforward loop references written from the upstream description."""
import pytest
import torch

from higherpose.config import get_default_config
from higherpose.losses import AELoss, HeatmapLoss, JointsMSELoss, MultiLossFactory, build_loss


def ae_loop_reference(tags, joints, loss_type):
    """Per image, per person loop (HigherHRNet's formulation)."""
    pushes, pulls = [], []
    for b in range(tags.shape[0]):
        refs, pull = [], 0.0
        for person in joints[b]:
            vals = [tags[b, int(idx)] for idx, vis in person.tolist() if vis > 0]
            if not vals:
                continue
            vals = torch.stack(vals)
            ref = vals.mean()
            refs.append(ref)
            pull = pull + torch.mean((vals - ref) ** 2)
        n = len(refs)
        if n == 0:
            pushes.append(torch.tensor(0.0, dtype=tags.dtype))
            pulls.append(torch.tensor(0.0, dtype=tags.dtype))
            continue
        if n == 1:
            pushes.append(torch.tensor(0.0, dtype=tags.dtype))
            pulls.append(pull / n)
            continue
        r = torch.stack(refs)
        diff = r[:, None] - r[None, :]
        if loss_type == "exp":
            push = torch.exp(-diff ** 2).sum() - n
        elif loss_type == "exp_abs":
            push = torch.exp(-diff.abs()).sum() - n
        else:
            push = torch.clamp(1 - diff.abs(), min=0).sum() - n
        pushes.append(push / ((n - 1) * n) * 0.5)
        pulls.append(pull / n)
    return torch.stack(pushes), torch.stack(pulls)


def random_joints(gen, batch, max_people, num_joints, res, people_per_image):
    joints = torch.zeros(batch, max_people, num_joints, 2, dtype=torch.int64)
    for b, n in enumerate(people_per_image):
        for p in range(n):
            k = int(torch.randint(1, num_joints + 1, (1,), generator=gen))
            js = torch.randperm(num_joints, generator=gen)[:k]
            for slot, j in enumerate(js.tolist()):
                flat = j * res * res + int(torch.randint(0, res * res, (1,), generator=gen))
                joints[b, p, slot] = torch.tensor([flat, 1])
    return joints


@pytest.mark.parametrize("loss_type", ["exp", "max", "exp_abs"])
def test_ae_loss_matches_loop(loss_type):
    gen = torch.Generator().manual_seed(0)
    j, res, m = 5, 8, 6
    people = [0, 1, 2, 6]  # includes the 0- and 1-person cases
    tags = torch.randn(len(people), j * res * res, generator=gen, dtype=torch.float64) * 1.5
    joints = random_joints(gen, len(people), m, j, res, people)
    push, pull = AELoss(loss_type)(tags, joints)
    ref_push, ref_pull = ae_loop_reference(tags, joints, loss_type)
    torch.testing.assert_close(push, ref_push)
    torch.testing.assert_close(pull, ref_pull)
    assert push[0] == 0 and pull[0] == 0 and push[1] == 0
    assert pull[3] > 0 and push[3] > 0


def test_ae_loss_gradient_matches_loop():
    gen = torch.Generator().manual_seed(1)
    j, res, m = 4, 6, 4
    tags = torch.randn(2, j * res * res, generator=gen, dtype=torch.float64)
    joints = random_joints(gen, 2, m, j, res, [3, 4])
    t1 = tags.clone().requires_grad_(True)
    t2 = tags.clone().requires_grad_(True)
    sum(AELoss("exp")(t1, joints)).sum().backward()
    sum(ae_loop_reference(t2, joints, "exp")).sum().backward()
    torch.testing.assert_close(t1.grad, t2.grad)


@pytest.mark.parametrize("loss_type, escapes", [("exp", False), ("exp_abs", True)])
def test_ae_loss_near_collapsed_tags(loss_type, escapes):
    """Tags t = w * f of a feature f that varies more within each person than between the two
    persons (hand-worked: joints at f = +-1 around person means +-0.2). Near w = 0 the 'exp' push
    is flat and pull wins: gradient descent shrinks w (the collapse). 'exp_abs' has a cusp at 0, so
    its push wins and w grows."""
    f = torch.tensor([0.2 - 1, 0.2 + 1, -0.2 - 1, -0.2 + 1], dtype=torch.float64)  # persons (0, 1), (2, 3)
    joints = torch.tensor([[[[0, 1], [1, 1]], [[2, 1], [3, 1]]]])
    for w0 in (1e-3, 1e-2):
        w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        push, pull = AELoss(loss_type)((w * f)[None], joints)
        (push + pull).sum().backward()
        assert (w.grad < 0) == escapes, (w0, float(w.grad))  # a descent step grows w iff grad < 0


def test_ae_loss_bad_input():
    with pytest.raises(ValueError, match="loss type"):
        AELoss("huber")
    with pytest.raises(ValueError, match="joints"):
        AELoss()(torch.zeros(2, 10), torch.zeros(2, 3, 2, dtype=torch.int64))


def test_heatmap_loss_masked_mean():
    gen = torch.Generator().manual_seed(2)
    pred, gt = torch.randn(2, 3, 4, 5, generator=gen), torch.randn(2, 3, 4, 5, generator=gen)
    mask = (torch.rand(2, 4, 5, generator=gen) > 0.3).float()
    out = HeatmapLoss()(pred, gt, mask)
    for b in range(2):
        total = 0.0
        for j in range(3):
            total += float((((pred[b, j] - gt[b, j]) ** 2) * mask[b]).sum())
        assert out[b].item() == pytest.approx(total / (3 * 4 * 5), rel=1e-5)


def test_joints_mse_loss_per_joint_reference():
    gen = torch.Generator().manual_seed(3)
    out, tgt = torch.randn(3, 4, 6, 5, generator=gen), torch.randn(3, 4, 6, 5, generator=gen)
    w = torch.rand(3, 4, 1, generator=gen)
    ref = 0.0
    for j in range(4):
        p = out[:, j].reshape(3, -1) * w[:, j]
        g = tgt[:, j].reshape(3, -1) * w[:, j]
        ref += torch.nn.functional.mse_loss(p, g)
    assert JointsMSELoss(True)(out, tgt, w).item() == pytest.approx((ref / 4).item(), rel=1e-5)
    assert JointsMSELoss(False)(out, tgt).item() == pytest.approx(
        torch.nn.functional.mse_loss(out, tgt).item(), rel=1e-5)


def _bottom_up_cfg():
    cfg = get_default_config()
    cfg.DATASET.NUM_JOINTS = 3
    cfg.LOSS.NUM_STAGES = 2
    cfg.LOSS.WITH_HEATMAPS_LOSS = (True, True)
    cfg.LOSS.HEATMAPS_LOSS_FACTOR = (1.0, 2.0)
    cfg.LOSS.WITH_AE_LOSS = (True, False)
    cfg.LOSS.PUSH_LOSS_FACTOR = (0.001, 0.001)
    cfg.LOSS.PULL_LOSS_FACTOR = (0.01, 0.001)
    cfg.LOSS.AE_LOSS_TYPE = "exp"
    return cfg


def test_multi_loss_factory_stages():
    cfg = _bottom_up_cfg()
    gen = torch.Generator().manual_seed(4)
    b, j = 2, 3
    outputs = [torch.randn(b, 2 * j, 4, 4, generator=gen), torch.randn(b, j, 8, 8, generator=gen)]
    heatmaps = [torch.rand(b, j, 4, 4, generator=gen), torch.rand(b, j, 8, 8, generator=gen)]
    masks = [torch.ones(b, 4, 4), torch.ones(b, 8, 8)]
    joints = [random_joints(gen, b, 3, j, 4, [2, 3]), random_joints(gen, b, 3, j, 8, [2, 3])]
    hm, push, pull = MultiLossFactory(cfg)(outputs, heatmaps, masks, joints)
    assert push[1] is None and pull[1] is None
    torch.testing.assert_close(hm[1], ((outputs[1] - heatmaps[1]) ** 2).mean(dim=(1, 2, 3)) * 2.0)
    ref_push, ref_pull = ae_loop_reference(outputs[0][:, j:].reshape(b, -1), joints[0], "exp")
    torch.testing.assert_close(push[0], ref_push * 0.001)
    torch.testing.assert_close(pull[0], ref_pull * 0.01)


def test_build_loss_picks_by_model():
    cfg = _bottom_up_cfg()
    assert isinstance(build_loss(cfg), MultiLossFactory)
    cfg.MODEL.NAME = "pose_hrt"
    assert isinstance(build_loss(cfg), JointsMSELoss)
    cfg = _bottom_up_cfg()
    cfg.LOSS.PUSH_LOSS_FACTOR = (0.001,)
    with pytest.raises(ValueError, match="PUSH_LOSS_FACTOR"):
        MultiLossFactory(cfg)
