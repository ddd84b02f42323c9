"""PatchGAN discriminator, hinge losses, adaptive weight and schedule."""

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from hydra_x.losses.gan import (
    DiscriminatorConfig,
    PatchDiscriminator,
    adaptive_gan_weight,
    d_hinge_loss,
    g_hinge_loss,
    gan_weight_at,
)
from tests.helpers import pixels


def test_hinge_losses_on_known_logits():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.5])
    # relu(1 - real) = [0, 0.5, 2] -> 5/6; relu(1 + fake) = [0, 1, 2.5] -> 7/6; 0.5 * (5/6 + 7/6) = 1
    torch.testing.assert_close(d_hinge_loss(real, fake), torch.tensor(1.0))
    torch.testing.assert_close(g_hinge_loss(fake), torch.tensor(1.0 / 6.0))
    assert d_hinge_loss(torch.full((4,), 3.0), torch.full((4,), -3.0)) == 0  # confident and right: no loss


def _toy():
    """A 'last layer' W (2, 3), input a (3,), output y = W a; rec = ||y - t||^2, gan = -c . y."""
    w = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], requires_grad=True)
    a, t, c = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.3, -0.2]), torch.tensor([2.0, -3.0])
    y = w @ a
    return w, a, t, c, y, (y - t).square().sum(), -(c * y).sum()


def test_adaptive_weight_is_the_ratio_of_gradient_norms_by_hand():
    w, a, t, c, y, rec, gan = _toy()
    # d rec / dW = 2 (y - t) a^T and d gan / dW = -c a^T: their norms are products of vector norms.
    rec_norm = (2 * (y - t)).norm() * a.norm()
    gan_norm = c.norm() * a.norm()
    weight = adaptive_gan_weight(rec, gan, w)
    torch.testing.assert_close(weight, (rec_norm / (gan_norm + 1e-4)).detach())
    assert not weight.requires_grad
    assert adaptive_gan_weight(rec, gan, w, max_weight=0.01) == 0.01
    (rec + weight * gan).backward()  # the graph was retained for the real backward
    assert w.grad is not None


def test_adaptive_weight_gathers_dtensor_gradients():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        w, a, t, c, y, rec, gan = _toy()
        expected = adaptive_gan_weight(rec, gan, w)
        wd = distribute_tensor(w.detach(), mesh, [Shard(0)]).requires_grad_()
        yd = wd.full_tensor() @ a
        got = adaptive_gan_weight((yd - t).square().sum(), -(c * yd).sum(), wd)
        torch.testing.assert_close(got, expected)
    finally:
        if owns_group:
            dist.destroy_process_group()


def test_gan_weight_schedule():
    assert [gan_weight_at(s, 100) for s in (0, 99, 100, 10_000)] == [0.0, 0.0, 1.0, 1.0]
    assert [gan_weight_at(s, 10, warmup_steps=4) for s in (9, 10, 11, 13, 20)] == [0.0, 0.25, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("norm", ["group", "spectral", "none"])
def test_discriminator_shapes_images_and_clips(norm):
    torch.manual_seed(0)
    disc = PatchDiscriminator(DiscriminatorConfig(channels=16, layers=3, norm=norm))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in disc.modules())
    image = pixels(2, 3, 64, 48)
    assert disc(image).shape == (2, 1, 6, 4)  # 64 -> 32 -> 16 -> 8 -> 7 -> 6 (stride-1 4x4 convs lose 1 each)
    clip = pixels(2, 3, 3, 64, 48)
    disc.eval()  # spectral norm's power iteration updates its vectors at every training forward
    logits = disc(clip)
    assert logits.shape == (2, 1, 3, 6, 4)
    torch.testing.assert_close(logits[:, :, 1], disc(clip[:, :, 1]))  # frame by frame
    disc.train()
    d_hinge_loss(disc(image), disc(pixels(2, 3, 64, 48, seed=1))).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in disc.parameters())


def test_discriminator_is_batch_independent_and_keeps_its_init():
    torch.manual_seed(0)
    disc = PatchDiscriminator()  # defaults: 64 channels, 3 layers, GroupNorm
    x = pixels(3, 3, 32, 32)
    torch.testing.assert_close(disc(x)[1:2], disc(x[1:2]))  # GroupNorm: no batch statistics, unlike BatchNorm
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    big = torch.cat([m.weight.flatten() for m in convs])
    assert abs(big.std().item() - 0.02) < 2e-3 and all(m.bias is None or not m.bias.any() for m in convs)
    norms = [m for m in disc.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 3 and all(abs(m.weight.mean().item() - 1) < 0.01 for m in norms)
    with pytest.raises(ValueError, match="norm must be one of"):
        DiscriminatorConfig(norm="batch")
