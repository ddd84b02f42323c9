"""Teacher adapters on tiny transformers models built from configs (random weights), saved and loaded by path."""

import logging

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file, save_file
from transformers import (
    BertConfig,
    BertModel,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    Siglip2Config,
    Siglip2Model,
    Siglip2VisionModel,
    SiglipVisionModel,
    VideoMAEModel,
    VJEPA2Model,
)

from hydra_x.losses import image_distill_loss, video_distill_loss
from hydra_x.teachers import (
    TEACHERS,
    Dinov2Teacher,
    Siglip2Teacher,
    SiglipTeacher,
    VideoMAETeacher,
    VJEPA2Teacher,
    detect_kind,
    load_teacher,
    save_tiny_teacher,
)
from tests.helpers import pixels

VIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])
KINDS = ("siglip2", "siglip", "dinov2", "vjepa2", "videomae")

# Checkpoints save_tiny_teacher does not make: a full SigLIP 2 (text tower too), DINOv2 with registers, BERT.
EXTRA = {
    "siglip2_full": lambda: Siglip2Model(
        Siglip2Config(
            vision_config=dict(**VIT, patch_size=8, num_patches=16),
            text_config=dict(**VIT, vocab_size=64, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        )
    ),
    "dinov2_reg": lambda: Dinov2WithRegistersModel(
        Dinov2WithRegistersConfig(**VIT, patch_size=4, image_size=16, num_register_tokens=3)
    ),
    "bert": lambda: BertModel(BertConfig(**VIT, vocab_size=64)),
}
MODEL_CLASSES = {
    "siglip2": Siglip2VisionModel,
    "siglip": SiglipVisionModel,
    "dinov2": Dinov2Model,
    "dinov2_reg": Dinov2WithRegistersModel,
    "vjepa2": VJEPA2Model,
    "videomae": VideoMAEModel,
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny random-weight checkpoints; "<name>_other" is a second one of the same shape (another seed)."""
    out = {}
    for seed, suffix in ((0, ""), (1, "_other")):
        for kind in KINDS:
            out[kind + suffix] = save_tiny_teacher(kind, tmp_path_factory.mktemp(kind + suffix), seed=seed)
        for name, build in EXTRA.items():
            torch.manual_seed(seed)
            out[name + suffix] = tmp_path_factory.mktemp(name + suffix)
            build().eval().save_pretrained(out[name + suffix])
    return out


def fp32(folder, **kw):
    return load_teacher(folder, dtype=torch.float32, **kw)


def reference(name, folder, x):
    """transformers' own output on input prepared by hand (family mean / std, model layout): (tokens, hidden)."""
    model = MODEL_CLASSES[name].from_pretrained(folder).eval()
    kw = dict(output_hidden_states=True)
    with torch.no_grad():
        if name == "siglip2":
            b, _, h, w = x.shape
            patches = rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=8, q=8)
            out = model(
                pixel_values=patches,
                pixel_attention_mask=torch.ones(b, patches.shape[1], dtype=torch.long),
                spatial_shapes=torch.tensor([[h // 8, w // 8]] * b),
                **kw,
            )
            return out.last_hidden_state, out.hidden_states
        if name == "siglip":
            out = model(pixel_values=x, **kw)  # SigLIP's 0.5 / 0.5 leaves [-1, 1] pixels as they are
            return out.last_hidden_state, out.hidden_states
        if name in ("dinov2", "dinov2_reg"):
            drop = 1 + (3 if name == "dinov2_reg" else 0)
            norm = ((x + 1) / 2 - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)
            out = model(pixel_values=norm, **kw)
            return out.last_hidden_state[:, drop:], [h[:, drop:] for h in out.hidden_states]
        norm = ((x + 1) / 2 - IMAGENET_MEAN.view(1, 3, 1, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1, 1)
        video = norm.transpose(1, 2)  # (B, T, 3, H, W)
        if name == "vjepa2":
            out = model(pixel_values_videos=video, skip_predictor=True, **kw)
        else:
            out = model(pixel_values=video, **kw)
        return out.last_hidden_state, out.hidden_states


CASES = [  # name, adapter class, native-size input shape, expected grid
    ("siglip2", Siglip2Teacher, (2, 3, 24, 40), (3, 5)),
    ("siglip", SiglipTeacher, (2, 3, 32, 32), (4, 4)),
    ("dinov2", Dinov2Teacher, (2, 3, 12, 20), (3, 5)),
    ("dinov2_reg", Dinov2Teacher, (2, 3, 12, 20), (3, 5)),
    ("vjepa2", VJEPA2Teacher, (2, 3, 4, 32, 32), (2, 4, 4)),
    ("videomae", VideoMAETeacher, (2, 3, 4, 32, 32), (2, 4, 4)),
]


@pytest.mark.parametrize("name,cls,shape,grid", CASES, ids=[c[0] for c in CASES])
def test_output_equals_transformers_on_the_same_input(folders, name, cls, shape, grid):
    teacher = fp32(folders[name], layers=(0, 1, -1))
    assert type(teacher) is cls
    x = pixels(*shape)
    out = teacher(x)
    tokens, hidden = reference(name, folders[name], x)
    n = grid[-1] * grid[-2]
    if teacher.video:
        tokens, hidden = tokens.unflatten(1, (grid[0], n)), [h.unflatten(1, (grid[0], n)) for h in hidden]
    assert out.grid == grid
    assert out.tokens.shape == (*tokens.shape[:-1], 32) and out.tokens.shape[-2] == n
    torch.testing.assert_close(out.tokens, tokens, rtol=1e-5, atol=1e-5)
    assert sorted(out.hidden) == [0, 1, 2]
    for k in out.hidden:
        torch.testing.assert_close(out.hidden[k], hidden[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name,kw,shape,tokens_shape,grid",
    [
        ("siglip2", {}, (1, 3, 43, 20), (1, 15, 32), (5, 3)),  # rounded to the patch: 40 x 24
        ("siglip2", dict(max_num_patches=16), (1, 3, 64, 128), (1, 15, 32), (3, 5)),  # shrunk to fit 16
        ("siglip2", dict(image_size=(16, 32)), (1, 3, 40, 40), (1, 8, 32), (2, 4)),
        ("siglip", {}, (1, 3, 48, 24), (1, 16, 32), (4, 4)),  # resized to its 32 x 32
        ("siglip", dict(image_size=(48, 24)), (1, 3, 48, 24), (1, 18, 32), (6, 3)),  # interpolated positions
        ("dinov2", {}, (1, 3, 21, 13), (1, 15, 32), (5, 3)),
        ("vjepa2", {}, (1, 3, 6, 24, 40), (1, 3, 16, 32), (3, 4, 4)),  # any even frame count; square crop
        ("vjepa2", dict(num_frames=4), (1, 3, 9, 32, 32), (1, 2, 16, 32), (2, 4, 4)),
        ("videomae", {}, (1, 3, 8, 24, 40), (1, 2, 16, 32), (2, 4, 4)),  # resampled to its 4 frames
    ],
)
def test_shapes_and_grids(folders, name, kw, shape, tokens_shape, grid):
    out = fp32(folders[name], **kw)(pixels(*shape))
    assert out.tokens.shape == tokens_shape and out.grid == grid and out.hidden == {}


def test_input_errors(folders):
    with pytest.raises(ValueError, match="multiple of 2 frames"):
        fp32(folders["vjepa2"])(pixels(1, 3, 5, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        fp32(folders["videomae"])(pixels(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        fp32(folders["siglip"])(pixels(1, 3, 2, 32, 32))
    with pytest.raises(ValueError, match="out of range"):
        fp32(folders["siglip"], layers=(3,))


def test_properties_and_default_bf16(folders):
    teacher = load_teacher(folders["vjepa2"])
    assert teacher.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in teacher.model.parameters())
    assert (teacher.dim, teacher.patch_size, teacher.tubelet_size) == (32, 8, 2)
    assert teacher.to("cpu") is teacher and teacher.device == torch.device("cpu")
    out = teacher(pixels(1, 3, 4, 32, 32))
    assert out.tokens.dtype == torch.float32 and torch.isfinite(out.tokens).all()
    exact = fp32(folders["vjepa2"])(pixels(1, 3, 4, 32, 32)).tokens
    assert (out.tokens - exact).abs().max() < 0.1  # bf16 rounding only


@pytest.mark.parametrize("name,inference_mode", [("siglip2", True), ("vjepa2", True), ("dinov2", False)])
def test_frozen_no_teacher_grad_and_outputs_usable_in_a_student_loss(folders, name, inference_mode):
    teacher = fp32(folders[name], layers=(1,), inference_mode=inference_mode)
    assert not teacher.model.training and not isinstance(teacher, torch.nn.Module)
    assert all(not p.requires_grad for p in teacher.model.parameters())
    x = pixels(2, 3, 4, 32, 32) if teacher.video else pixels(2, 3, 32, 32)
    out = teacher(x)
    assert not out.tokens.is_inference() and not out.hidden[1].is_inference()
    student = torch.nn.Linear(32, 32)
    loss = (
        F.mse_loss(student(out.hidden[1]), out.tokens)
        + (1 - F.cosine_similarity(student(out.tokens), out.tokens)).mean()
    )
    loss.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.model.parameters())


def test_changing_the_teacher_changes_the_distillation_loss(folders):
    torch.manual_seed(0)
    x = pixels(2, 3, 24, 40)
    student = torch.randn(2, 15, 32, requires_grad=True)
    losses = [image_distill_loss(student, fp32(folders[k])(x), grid=(3, 5)) for k in ("siglip2", "siglip2_other")]
    assert abs(losses[0].item() - losses[1].item()) > 1e-3
    clip = pixels(2, 3, 4, 32, 32)
    frames = torch.randn(2, 4, 16, 32, requires_grad=True)  # Decompressor output: 4 frames, 4 x 4 tokens
    video = [video_distill_loss(frames, fp32(folders[k])(clip), grid=(4, 4)) for k in ("vjepa2", "vjepa2_other")]
    assert abs(video[0].item() - video[1].item()) > 1e-3
    # The same teacher whose weights are changed in place gives yet another loss.
    teacher = fp32(folders["siglip2"])
    with torch.no_grad():
        teacher.model.post_layernorm.bias.add_(1.0)
    changed = image_distill_loss(student, teacher(x), grid=(3, 5))
    assert abs(changed.item() - losses[0].item()) > 1e-3
    (losses[0] + video[0]).backward()
    assert student.grad.abs().sum() > 0 and frames.grad.abs().sum() > 0


def test_kind_detection_and_loading(folders):
    expected = {
        "siglip2": ("siglip2", Siglip2Teacher),
        "siglip2_full": ("siglip2", Siglip2Teacher),
        "siglip": ("siglip", SiglipTeacher),
        "dinov2": ("dinov2", Dinov2Teacher),
        "dinov2_reg": ("dinov2", Dinov2Teacher),
        "vjepa2": ("vjepa2", VJEPA2Teacher),
        "videomae": ("videomae", VideoMAETeacher),
    }
    for name, (kind, cls) in expected.items():
        assert detect_kind(folders[name]) == kind
        assert type(load_teacher(folders[name], dtype=torch.float32)) is cls
    assert set(TEACHERS) == {"siglip2", "siglip", "dinov2", "vjepa2", "videomae", "internvit"}
    # A fixed-resolution SigLIP 2 checkpoint is a plain SigLIP model: kind "siglip2" still loads it.
    assert type(load_teacher(folders["siglip"], kind="siglip2")) is SiglipTeacher


def test_full_checkpoint_gives_the_vision_tower_only(folders):
    teacher = fp32(folders["siglip2_full"])
    names = [n for n, _ in teacher.model.named_parameters()]
    assert names and not any("text" in n for n in names)
    full = Siglip2Model.from_pretrained(folders["siglip2_full"]).eval()
    x = pixels(1, 3, 32, 32)
    patches = rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=8, q=8)
    with torch.no_grad():
        ref = full.vision_model(
            pixel_values=patches,
            pixel_attention_mask=torch.ones(1, 16, dtype=torch.long),
            spatial_shapes=torch.tensor([[4, 4]]),
        ).last_hidden_state
    torch.testing.assert_close(teacher(x).tokens, ref, rtol=1e-5, atol=1e-5)


def test_clear_errors(folders, tmp_path):
    with pytest.raises(ValueError, match="'bert'.*supported kinds: siglip2, siglip, dinov2, vjepa2, videomae"):
        load_teacher(folders["bert"])
    with pytest.raises(ValueError, match="unknown teacher kind 'clip'.*siglip2, siglip, dinov2, vjepa2, videomae"):
        load_teacher(folders["siglip"], kind="clip")
    with pytest.raises(ValueError, match="'dinov2' teacher takes"):
        load_teacher(folders["siglip"], kind="dinov2")
    # A checkpoint missing tower weights must not load with random values.
    state = load_file(folders["siglip"] / "model.safetensors")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((folders["siglip"] / "config.json").read_text())
    save_file({k: v for k, v in state.items() if "layers.1." not in k}, partial / "model.safetensors")
    with pytest.raises(ValueError, match="lacks weights.*layers.1"):
        load_teacher(partial)


def test_tiny_teachers_are_labelled_random(folders, caplog):
    with caplog.at_level(logging.WARNING, logger="hydra_x.teachers.base"):
        load_teacher(folders["videomae"])
    assert any("RANDOM weights" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hydra_x.teachers.base"):
        load_teacher(folders["dinov2_reg"])  # built directly from a config, not labelled
    assert not caplog.records
    with pytest.raises(ValueError, match="tiny teachers exist for"):
        save_tiny_teacher("clip", "unused")
