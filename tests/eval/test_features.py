"""Feature nets: the FID Inception equals torch-fidelity's, weights loading and its errors, I3D's call
convention, and the FID / FVD pipelines end to end on the tiny offline nets."""

import importlib
import importlib.util
import math
import socket
import sys
import time
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.data.embedded import heldout_clips, heldout_images
from hydra_x.eval import features as feats
from hydra_x.eval.features import FeatureNet, FeatureWeightsError, load_feature_net
from hydra_x.eval.frechet import GaussianStats, frechet_distance
from hydra_x.eval.inception import FIDInceptionV3, full_fp32_convolutions, resize_bilinear_tf1
from hydra_x.eval.tiny import save_tiny_feature_net

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture
def torch_fidelity(monkeypatch):
    """torch-fidelity's modules without its package __init__ (which imports torchvision)."""
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torch-fidelity is not installed (pip install --no-deps torch-fidelity==0.4.0)")
    pkg = types.ModuleType("torch_fidelity")
    pkg.__path__ = list(spec.submodule_search_locations)
    for name in [m for m in sys.modules if m == "torch_fidelity" or m.startswith("torch_fidelity.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch_fidelity", pkg)
    names = ("feature_extractor_inceptionv3", "interpolate_compat_tensorflow")
    mods = types.SimpleNamespace(**{n: importlib.import_module(f"torch_fidelity.{n}") for n in names})
    yield mods
    for name in [m for m in sys.modules if m.startswith("torch_fidelity.")]:
        del sys.modules[name]


def _calibrated_random_inception(seed: int = 0) -> FIDInceptionV3:
    """Random weights with BatchNorm statistics fitted to random 299 x 299 images, so activations stay O(1)
    through all 94 layers (default init would shrink them towards zero and make any comparison vacuous)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FIDInceptionV3()
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in bns:
            nn.init.uniform_(bn.weight, 0.8, 1.2)
            nn.init.uniform_(bn.bias, -0.2, 0.2)
            bn.momentum = None  # cumulative average: one pass sets the statistics of that pass
        nn.Module.train(net, True)  # FIDInceptionV3.train() refuses training mode on purpose
        with torch.no_grad():
            net.features_from_levels(torch.rand(2, 3, 299, 299) * 255)
        nn.Module.train(net, False)
    for bn in bns:
        bn.momentum = 0.1
    return net


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """(calibrated random FID Inception, its state dict saved under the real file name)."""
    net = _calibrated_random_inception()
    path = tmp_path_factory.mktemp("inception") / INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return net, path


def test_tf1_resize_is_torch_fidelity_bit_for_bit(torch_fidelity):
    ref = torch_fidelity.interpolate_compat_tensorflow.interpolate_bilinear_2d_like_tensorflow1x
    g = torch.Generator().manual_seed(0)
    for h, w in [(17, 33), (299, 299), (512, 300), (64, 64)]:
        x = torch.rand(2, 3, h, w, generator=g) * 255
        ours = resize_bilinear_tf1(x, (299, 299))
        assert torch.equal(ours, ref(x, size=(299, 299), align_corners=False))
    x = torch.rand(1, 3, 299, 299, generator=g)
    assert torch.equal(resize_bilinear_tf1(x, (299, 299)), x)  # same size: identity


def test_inception_equals_torch_fidelity(torch_fidelity, inception_file):
    _, path = inception_file
    ours = load_feature_net("inception", weights=path)  # our real file-loading path
    theirs = torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
    )
    assert isinstance(ours, FeatureNet) and (ours.kind, ours.dim) == ("image", 2048)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())  # the weights file's layout
    g = torch.Generator().manual_seed(1)
    photo = heldout_images(1, 320)  # (1, 3, 320, 320) a real photograph: downsampled to 299
    for x in (photo, torch.rand(1, 3, 299, 299, generator=g) * 2 - 1, torch.rand(1, 3, 90, 131, generator=g) * 2 - 1):
        levels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # what torch-fidelity reads from a PNG
        (expected,) = theirs(levels)
        got = ours(x)
        assert got.shape == (x.shape[0], 2048) and got.dtype == torch.float32
        assert expected.abs().mean() > 1e-2 and expected.std() > 1e-2  # the features are not degenerate
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    # Out-of-range and NaN pixels become the levels an 8-bit writer would store (255 and 127.5 -> 128).
    x = torch.tensor([3.0, float("nan"), -2.0, 0.0])
    assert ours.to_pixel_levels(x).tolist() == [255.0, 128.0, 0.0, 128.0]


def test_tf32_is_off_inside_feature_nets_and_restored_after():
    # On CUDA, cuDNN's default TF32 moved Inception features by 8e-4 relative (H100); the nets turn it off.
    before = torch.backends.cudnn.allow_tf32
    with pytest.raises(KeyError), full_fp32_convolutions():
        assert torch.backends.cudnn.allow_tf32 is False
        raise KeyError("restored even on error")
    assert torch.backends.cudnn.allow_tf32 == before


def test_inception_weights_layout_and_strict_loading(tmp_path, inception_file):
    net = FIDInceptionV3()
    state = net.state_dict()
    assert state["fc.weight"].shape == (1008, 2048)
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_7c.branch_pool.bn.running_var"].shape == (192,)
    assert sum(k.endswith(".conv.weight") for k in state) == 94  # the TF graph's 94 convolutions
    # A file without BatchNorm step counters (they do not affect inference) still loads.
    good = torch.load(inception_file[1])
    torch.save({k: v for k, v in good.items() if "num_batches_tracked" not in k}, tmp_path / "a.pth")
    loaded = feats.load_inception(tmp_path / "a.pth")
    for key in ("Mixed_5b.branch1x1.bn.running_mean", "Conv2d_1a_3x3.conv.weight", "fc.bias"):
        assert torch.equal(loaded.state_dict()[key], good[key])
    # Anything else missing or extra is refused, naming the key.
    bad = dict(good)
    del bad["Mixed_6e.branch7x7_3.conv.weight"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="Mixed_6e.branch7x7_3.conv.weight"):
        feats.load_inception(tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        feats.load_inception(tmp_path / "junk.pth")


def test_missing_weights_fail_fast_naming_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for name, spec in list(feats.WEIGHTS.items()):
        # .invalid never resolves (RFC 6761): the download fails the same way online and offline.
        url = spec.url.replace(spec.url.split("/")[2], "weights.invalid")
        monkeypatch.setitem(feats.WEIGHTS, name, feats.WeightsFile(spec.filename, url, spec.hash_prefix))
        start = time.monotonic()
        with pytest.raises(FeatureWeightsError) as err:
            load_feature_net(name)
        assert time.monotonic() - start < 15
        msg = str(err.value)
        assert spec.filename in msg and url in msg and "weights=" in msg
        assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / spec.filename) in msg
    with pytest.raises(FeatureWeightsError, match="does not exist"):
        load_feature_net("inception", weights=tmp_path / "nowhere.pth")


def test_real_urls_fail_fast_when_offline(tmp_path, monkeypatch):
    try:
        socket.getaddrinfo("github.com", 443)
        pytest.skip("online: the real download would run")
    except OSError:
        pass
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in ("inception", "i3d"):
        start = time.monotonic()
        with pytest.raises(FeatureWeightsError, match="could not|failed") as err:
            load_feature_net(name)
        assert time.monotonic() - start < 15 and feats.WEIGHTS[name].url in str(err.value)


def test_weights_from_torch_hub_cache_and_folder(tmp_path, monkeypatch, inception_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    cache = feats.cached_weights_path("inception")
    cache.parent.mkdir(parents=True)
    net, path = inception_file
    cache.write_bytes(path.read_bytes())
    monkeypatch.setattr(feats, "check_reachable", lambda url: pytest.fail("must not download"))
    expected = net.state_dict()
    for loaded in (load_feature_net("inception"), load_feature_net("fid", weights=cache.parent)):
        assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(ValueError, match="unknown feature net 'inceptionv4'"):
        load_feature_net("inceptionv4")


class _FakeI3D(nn.Module):
    """Same call signature as StyleGAN-V's i3d_torchscript.pt; insists on the FVD calling convention."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, stride=(2, 4, 4))
        self.fc = nn.Linear(8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        torch._assert(not rescale and not resize and return_features, "wrong I3D flags")
        torch._assert(x.shape[3] == 224 and x.shape[4] == 224, "I3D input must be 224 x 224")
        torch._assert(bool(x.min() >= -1.0) and bool(x.max() <= 1.0), "I3D input must be in [-1, 1]")
        return self.fc(F.relu(self.conv(x)).mean((2, 3, 4)))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_i3d_loads_torchscript_and_preprocesses_like_the_fvd_scripts(tmp_path):
    torch.manual_seed(0)
    fake = _FakeI3D().eval()
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(fake).save(str(path))
    net = load_feature_net("i3d", weights=tmp_path)  # folder holding the usual file name
    assert isinstance(net, FeatureNet) and (net.kind, net.dim) == ("video", 400)
    clips = heldout_clips(2, 9, 64)  # (2, 3, 9, 64, 64)
    clips = torch.cat([clips, clips[..., :48]], dim=-1)  # (2, 3, 9, 64, 112): not square
    out = net(clips)
    assert out.shape == (2, 400) and out.dtype == torch.float32
    # The reference: the common StyleGAN-V FVD preprocessing on [0, 1] 8-bit frames (C, T, H, W) per clip.
    ref_in = []
    for v in ((clips.clamp(-1, 1) + 1) * 127.5).round() / 255:
        h, w = v.shape[-2:]
        scale = 224 / min(h, w)
        size = (224, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), 224)
        v = F.interpolate(v, size=size, mode="bilinear", align_corners=False)
        top, left = (v.shape[2] - 224) // 2, (v.shape[3] - 224) // 2
        ref_in.append((v[:, :, top : top + 224, left : left + 224] - 0.5) * 2)
    expected = fake(torch.stack(ref_in), rescale=False, resize=False, return_features=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"clips \(N, 3, T, H, W\)"):
        net(clips[:, :, 0])
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="TorchScript"):
        load_feature_net("i3d", weights=tmp_path / "junk.pt")


def _distances(net, real: torch.Tensor, noise: torch.Tensor, sigmas) -> list[float]:
    ref = GaussianStats(net.dim)
    for chunk in real.split(7):  # streamed in uneven batches, like the runner
        ref.update(net(chunk))
    out = []
    for sigma in sigmas:
        other = GaussianStats(net.dim)
        other.update(net((real + sigma * noise).clamp(-1, 1)))
        out.append(frechet_distance(ref, other))
    return out


def test_tiny_fid_pipeline_orders_noise_levels(tmp_path):
    path = save_tiny_feature_net("image", tmp_path / "tiny_image.safetensors", seed=0)
    net = load_feature_net(f"tiny-image:{path}")
    assert isinstance(net, FeatureNet) and net.kind == "image" and "NOT-FID" in net.name
    real = heldout_images(48, 48)
    noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(0))
    d0, d1, d2 = _distances(net, real, noise, (0.0, 0.05, 0.2))
    assert abs(d0) < 1e-9 and d1 > 1e-5 and d2 > 2 * d1


def test_tiny_fvd_pipeline_orders_noise_levels(tmp_path):
    path = save_tiny_feature_net("video", tmp_path / "tiny_video.safetensors", seed=0)
    net = load_feature_net("tiny-video", weights=path)
    assert isinstance(net, FeatureNet) and net.kind == "video" and "NOT-FVD" in net.name
    real = heldout_clips(12, 8, 32)
    noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(0))
    d0, d1, d2 = _distances(net, real, noise, (0.0, 0.05, 0.2))
    assert abs(d0) < 1e-9 and d1 > 1e-5 and d2 > 2 * d1


def test_tiny_nets_are_deterministic_files(tmp_path):
    x = heldout_images(3, 40)
    a = load_feature_net(f"tiny-image:{save_tiny_feature_net('image', tmp_path / 'a.safetensors', seed=5)}")
    b = load_feature_net(f"tiny-image:{save_tiny_feature_net('image', tmp_path / 'b.safetensors', seed=5)}")
    c = load_feature_net(f"tiny-image:{save_tiny_feature_net('image', tmp_path / 'c.safetensors', seed=6)}")
    assert torch.equal(a(x), b(x)) and not torch.allclose(a(x), c(x))
    with pytest.raises(ValueError, match="holds a tiny image feature net"):
        load_feature_net(f"tiny-video:{tmp_path / 'a.safetensors'}")
    with pytest.raises(ValueError, match="needs a file"):
        load_feature_net("tiny-image")
    with pytest.raises(FileNotFoundError):
        load_feature_net(f"tiny-image:{tmp_path / 'missing.safetensors'}")
    assert np.isfinite(a(x).numpy()).all()
