"""Weights on disk and on the Hub: ``config.json`` + ``model.safetensors``, in the huggingface_hub way.

- A name is a local folder if one exists at that path, otherwise a Hub repo id fetched through
  ``huggingface_hub.hf_hub_download`` (cached, honours HF_HUB_OFFLINE, revision, token).
- Only safetensors are read: nothing is ever unpickled. A folder with only ``pytorch_model.bin`` or
  ``*.pt`` files is refused with a message saying how to convert it.
- Missing, unexpected and mis-shaped keys are reported by name; ``strict=True`` (the default) makes any
  of them an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass
class LoadingInfo:
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[str] = field(default_factory=list)  # "name: checkpoint shape vs model shape"

    @property
    def clean(self) -> bool:
        return not (self.missing_keys or self.unexpected_keys or self.mismatched_keys)

    def describe(self) -> str:
        parts = []
        for label, keys in (
            ("missing", self.missing_keys),
            ("unexpected", self.unexpected_keys),
            ("mismatched", self.mismatched_keys),
        ):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
                parts.append(f"{label} keys: {shown}")
        return "; ".join(parts) or "all keys matched"


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a crash leaves the old file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(model: nn.Module, config: dict[str, Any], folder: str | Path, *, model_type: str) -> Path:
    from hydra_x._version import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    payload = {"model_type": model_type, "hydra_x_version": __version__, **config}
    _atomic_write(folder / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(payload, indent=2) + "\n"))
    return folder


def looks_like_path(name: str) -> bool:
    """Hub repo ids are 'name' or 'org/name'; anything else that is not on disk is a missing local path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name


def resolve_file(
    name_or_path: str | Path,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    optional: bool = False,
) -> Path | None:
    """Local path of ``filename`` in a local folder or a Hub repo; None if ``optional`` and absent."""
    local = Path(name_or_path)
    if local.is_dir():
        path = local / filename
        if path.is_file():
            return path
        if optional:
            return None
        raise FileNotFoundError(f"{local} has no {filename} (it holds: {sorted(p.name for p in local.iterdir())})")
    if local.exists():
        raise ValueError(f"{local} is a file; expected a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    if looks_like_path(str(name_or_path)):
        raise FileNotFoundError(f"{name_or_path}: no such folder (and not a Hub repo id of the form 'org/name')")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                str(name_or_path),
                filename,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
            )
        )
    except EntryNotFoundError as err:
        if isinstance(err, LocalEntryNotFoundError):  # offline and not cached: not proof the file is absent
            raise OSError(
                f"{str(name_or_path)!r} is not a local folder and {filename} is neither cached nor fetchable "
                f"from the Hugging Face Hub (offline?): {err}"
            ) from err
        if optional:
            return None
        raise FileNotFoundError(f"Hub repo {name_or_path!r} has no {filename}") from None
    except Exception as err:  # offline, unknown repo, bad id: say what was tried
        raise OSError(
            f"{str(name_or_path)!r} is not a local folder and {filename} could not be fetched from the "
            f"Hugging Face Hub ({type(err).__name__}: {err})"
        ) from err


def read_config(name_or_path: str | Path, model_type: str, **hub: Any) -> dict[str, Any]:
    path = resolve_file(name_or_path, CONFIG_NAME, **hub)
    data = json.loads(Path(path).read_text())
    found = data.pop("model_type", None)
    data.pop("hydra_x_version", None)
    if found is not None and found != model_type:
        raise ValueError(f"{name_or_path} holds a {found!r} model, not a {model_type!r}")
    return data


def read_state_dict(name_or_path: str | Path, **hub: Any) -> dict[str, torch.Tensor]:
    """The full state dict from ``model.safetensors`` or a sharded safetensors index."""
    single = resolve_file(name_or_path, WEIGHTS_NAME, optional=True, **hub)
    if single is not None:
        return load_file(single)
    index = resolve_file(name_or_path, WEIGHTS_INDEX_NAME, optional=True, **hub)
    if index is not None:
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(resolve_file(name_or_path, shard, **hub)))
        return state
    local = Path(name_or_path)
    pickled = sorted(p.name for p in local.iterdir() if p.suffix in PICKLED_SUFFIXES) if local.is_dir() else []
    hint = (
        f"; found only pickled weights {pickled}, which are never loaded (unpickling can run arbitrary code): "
        "convert them to safetensors in a trusted environment"
        if pickled
        else ""
    )
    raise FileNotFoundError(f"no {WEIGHTS_NAME} in {name_or_path}{hint}")


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor]) -> LoadingInfo:
    """Copy matching tensors into ``model``; return what did not match."""
    own = model.state_dict()
    info = LoadingInfo(
        missing_keys=sorted(set(own) - set(state)),
        unexpected_keys=sorted(set(state) - set(own)),
    )
    usable = {}
    for key in sorted(set(own) & set(state)):
        if own[key].shape != state[key].shape:
            info.mismatched_keys.append(f"{key}: {tuple(state[key].shape)} vs {tuple(own[key].shape)}")
        else:
            usable[key] = state[key]
    model.load_state_dict(usable, strict=False)
    return info


def load_pretrained(
    cls: type,
    config_cls: type,
    name_or_path: str | Path,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    strict: bool = True,
    output_loading_info: bool = False,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    model_type: str = "hydra-x-tokenizer",
    **config_overrides: Any,
):
    """Build ``cls`` from the folder's config and load its weights.

    With ``strict=False``, mismatches are logged as warnings and the model keeps its initialisation for
    those tensors; ``output_loading_info=True`` returns ``(model, LoadingInfo)``. ``config_overrides``
    change config fields that do not affect weights (e.g. ``attention_impl``).
    """
    hub = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    config = config_cls.from_dict({**read_config(name_or_path, model_type, **hub), **config_overrides})
    state = read_state_dict(name_or_path, **hub)
    check = getattr(cls, "check_state_dict", None)  # a model-specific check that explains a mismatch
    if check is not None:
        check(config, state.keys(), str(name_or_path), strict=strict)
    model = cls.from_config(config, device="cpu")
    info = load_state_into(model, state)
    if not info.clean:
        message = f"loading {name_or_path}: {info.describe()}"
        if strict:
            raise ValueError(message + " (pass strict=False to load anyway)")
        log.warning(message)
    model = model.to(device=device or "cpu", dtype=dtype)
    model.eval()
    return (model, info) if output_loading_info else model


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


CONNECT_TIMEOUT_S = 5.0  # an offline machine fails in seconds, not at the operating system's TCP timeout


def check_reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to the URL's host, or its proxy, within ``timeout`` (OSError if not)."""
    import socket
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname or "", p.port or 80
    socket.create_connection((host, port), timeout=timeout).close()
