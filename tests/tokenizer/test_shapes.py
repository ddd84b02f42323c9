import pytest
import torch

from tests.helpers import pixels, tiny


def test_image_latent_shape():
    model = tiny()
    z = model.encode(pixels(2, 3, 64, 48))
    assert z.shape == (2, 64, 1, 4, 3)


def test_17_frame_clip_gives_5_latent_steps_and_round_trips_shape():
    model = tiny()
    x = pixels(1, 3, 17, 32, 48)
    z = model.encode(x)
    assert z.shape == (1, 64, 5, 2, 3)
    assert model.decode(z).shape == x.shape
    assert model.semantic(z).shape == (1, 5, 6, model.config.width)


@pytest.mark.parametrize("shape", [(2, 3, 32, 80), (1, 3, 80, 16), (1, 3, 5, 48, 32), (1, 3, 1, 16, 16)])
def test_decode_of_encode_has_the_input_shape(shape):
    model = tiny()
    x = pixels(*shape)
    assert model.decode(model.encode(x), video=x.ndim == 5).shape == x.shape
    assert model(x).x_rec.shape == x.shape
    if x.ndim == 4:
        assert model.decode(model.encode(x)).shape == x.shape  # one step decodes to an image by default


@pytest.mark.parametrize(
    "folds, frames, steps", [((2, 2), 17, 5), ((4, 1), 17, 5), ((1, 1), 9, 9), ((2, 1), 9, 5), ((1, 4), 9, 3)]
)
def test_every_fold_schedule_has_exact_shapes(folds, frames, steps):
    model = tiny(temporal_folds=folds)
    x = pixels(1, 3, frames, 32, 32)
    out = model(x)
    assert out.z.shape == (1, 64, steps, 2, 2)
    assert out.s.shape == (1, steps, 4, model.config.width)
    assert out.x_rec.shape == x.shape
    assert out.video_features.shape == (1, frames - 1, 4, model.config.width)


def test_forward_outputs_for_a_training_step():
    model = tiny(image_teacher_dim=24, video_teacher_dim=40).train()
    out = model(pixels(2, 3, 9, 32, 32))
    assert out.image_features.shape == (2, 4, 24)
    assert out.video_features.shape == (2, 8, 4, 40)
    assert out.h.shape == out.h_restored.shape == (2, 3, 4, model.config.width)
    assert out.posterior.mean.shape == out.z.shape == (2, 64, 3, 2, 2)
    # In training the latent is a sample, not the mean.
    assert not torch.allclose(out.z, model.normalize(out.posterior.mean))
    image_out = model(pixels(2, 3, 32, 32))
    assert image_out.video_features is None and image_out.x_rec.shape == (2, 3, 32, 32)


def test_forward_can_skip_the_parts_a_stage_freezes():
    model = tiny(image_teacher_dim=8)
    x = pixels(1, 3, 5, 32, 32)
    full = model(x)
    no_sem = model(x, semantic=False)
    no_rec = model(x, reconstruct=False)
    assert no_sem.s is None and no_sem.image_features is None and no_sem.video_features is None
    assert torch.equal(no_sem.x_rec, full.x_rec)
    assert no_rec.x_rec is None and torch.equal(no_rec.s, full.s)
