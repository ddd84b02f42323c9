"""The frozen InternViT teacher (HYDRA-TOK): hidden states at the asked layers, frozen, and the multi-layer loss."""

import json

import pytest
import torch

from hydra_x import HydraXTokenizer
from hydra_x.hf import IMAGENET_MEAN, IMAGENET_STD, load_internvl_vision
from hydra_x.losses import layer_distill_losses
from hydra_x.teachers import InternViTTeacher, detect_kind, load_teacher, save_tiny_teacher
from tests.helpers import pixels


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    root = tmp_path_factory.mktemp("internvit")
    return save_tiny_teacher("internvit", root / "a", seed=0), save_tiny_teacher("internvit", root / "b", seed=1)


def imagenet(x):
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return ((x + 1) / 2 - mean) / std


def test_hidden_states_at_the_asked_layers_are_the_towers(towers):
    folder, _ = towers
    assert detect_kind(folder) == "internvit"
    teacher = load_teacher(folder, dtype=torch.float32, layers=(1, 4))
    assert isinstance(teacher, InternViTTeacher) and (teacher.dim, teacher.num_layers, teacher.patch_size) == (32, 4, 8)
    x = pixels(2, 3, 40, 24)  # not the tower's 32^2: the model resizes its position embedding itself
    out = teacher(x)
    tower = load_internvl_vision(folder).eval()
    with torch.no_grad():
        ref = tower(pixel_values=imagenet(x), output_hidden_states=True)
    assert out.grid == (5, 3) and sorted(out.hidden) == [1, 4]
    for k in (1, 4):
        torch.testing.assert_close(out.hidden[k], ref.hidden_states[k][:, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.tokens, ref.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-5)
    other = teacher(x, layers=(0, -1))  # per-call layers; -1 counts back
    assert sorted(other.hidden) == [0, 4]
    with pytest.raises(ValueError, match="out of range"):
        teacher(x, layers=(5,))


def test_the_teacher_is_frozen_bf16_and_gets_no_gradient(towers):
    folder, _ = towers
    teacher = load_teacher(folder, layers=(2,))
    assert teacher.dtype == torch.bfloat16 and not isinstance(teacher, torch.nn.Module)
    assert all(not p.requires_grad and p.dtype == torch.bfloat16 for p in teacher.model.parameters())
    student = torch.randn(2, 16, 32, requires_grad=True)
    target = teacher(pixels(2, 3, 32, 32)).hidden
    loss = layer_distill_losses({2: student}, target, (4, 4), grid=(4, 4))[2]
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.model.parameters())
    assert target[2].dtype == torch.float32 and not target[2].requires_grad


def test_changing_the_teacher_changes_the_multi_layer_loss(towers):
    a, b = towers
    model = HydraXTokenizer.from_internvit(a, decoder="regression").eval()
    x = pixels(2, 3, 32, 32)
    layers = (1, 2, 3, 4)
    with torch.no_grad():
        feats = {k: v[:, 0] for k, v in model(x, feature_layers=layers).layer_features.items()}
    losses = {}
    for name, folder in (("a", a), ("b", b)):
        out = load_teacher(folder, dtype=torch.float32, layers=layers)(x)
        losses[name] = layer_distill_losses(feats, out.hidden, out.grid, grid=(4, 4))
    # The student starts as teacher a: its Gen-ViT layers match it exactly; the Sem-ViT's differ (bottleneck).
    for k in (1, 2):
        assert losses["a"][k] < 1e-5 and losses["b"][k] > 0.1
    for k in layers:
        assert abs(losses["a"][k] - losses["b"][k]) > 1e-3, k


def test_width_mismatch_and_remote_code_are_clear_errors(towers, tmp_path):
    folder, _ = towers
    out = load_teacher(folder, dtype=torch.float32, layers=(1,))(pixels(1, 3, 32, 32))
    with pytest.raises(ValueError, match="student width 16 != teacher width 32"):
        layer_distill_losses({1: torch.randn(1, 16, 16)}, out.hidden, out.grid, grid=(4, 4))
    with pytest.raises(ValueError, match="no hidden state for layers"):
        layer_distill_losses({3: torch.randn(1, 16, 32)}, out.hidden, out.grid, grid=(4, 4))
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"model_type": "internvl_chat", "auto_map": {"AutoConfig": "x.Y"}}))
    with pytest.raises(ValueError, match="remote-code InternViT"):
        load_teacher(old)
