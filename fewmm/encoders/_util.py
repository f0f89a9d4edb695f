"""Helpers shared by the encoder modules (not public API).

- :func:`weights_sha256`: sha256 of a weights file (memoised, see base.file_sha256).
- :func:`hub_offline`: whether hub look-ups must stay local (``HF_HUB_OFFLINE`` or an argument).
- :func:`resolve_hf_model`: a Hugging Face hub id or a local folder -> (local folder, weights id),
  failing fast with an :class:`~fewmm.errors.EncoderError` that says how to pass a local path.
- :func:`to_pil_rgb`, :func:`to_pil_gray`: image payload -> PIL image.
- :func:`l2_normalize`: row-wise L2 normalisation of a float tensor.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from ..data.io import audio_at  # noqa: F401  (re-exported for the audio encoders)
from ..util import file_sha256
from ..util import l2_normalize as unit_rows


_TRUE = {"1", "true", "yes", "on"}


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a weights file (:func:`~fewmm.encoders.base.file_sha256`, memoised).

    Raises
    ------
    EncoderError
        The file does not exist.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise EncoderError(f"weights file not found: {p}")
    return file_sha256(p)


def hub_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set."""
    if offline is not None:
        return bool(offline)
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def num_threads(n: int | None) -> int:
    """Threads for a non-torch runtime (CTranslate2, LiteRT): ``n`` or torch's intra-op count."""
    if n is not None:
        if int(n) < 1:
            raise EncoderError(f"num_threads must be >= 1, got {n}")
        return int(n)
    return max(1, torch.get_num_threads())


# Files a transformers model folder needs (weights in safetensors preferred, .bin as fallback).
_HF_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken"]
_HF_BIN_PATTERNS = ["*.json", "*.txt", "*.model", "pytorch_model*.bin", "*.tiktoken"]
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def find_hf_weights(folder: Path) -> list[Path]:
    """The weights files of a transformers model folder (single file or sharded, sorted)."""
    for name in _HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for pattern in ("model-*-of-*.safetensors", "pytorch_model-*-of-*.bin"):
        shards = sorted(folder.glob(pattern))
        if shards:
            return shards
    return []


def resolve_hf_model(
    model: str | os.PathLike,
    encoder_name: str,
    revision: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, str]:
    """Find a transformers model folder on disk, downloading it from the hub when allowed.

    Parameters
    ----------
    model : str or path-like
        A local folder written by ``save_pretrained`` (config + weights + processor files), or a
        Hugging Face hub id such as ``"openai/clip-vit-base-patch32"``.
    encoder_name : str
        Registry name, for error messages (e.g. ``"hf-clip-image"``).
    revision : str, optional
        Hub branch, tag or commit (default: ``"main"``).
    offline : bool, optional
        Never touch the network; default: ``HF_HUB_OFFLINE`` is set.
    cache_dir : path-like, optional
        Hugging Face cache folder (default: the hub's own, ``$HF_HOME/hub``).

    Returns
    -------
    (folder, weights_id) : (pathlib.Path, str)
        ``weights_id`` is the sha256 of the weights file for a local folder (of the concatenated
        shard digests when sharded), or ``"hub:<id>@<commit>"`` for a hub id.

    Raises
    ------
    EncoderError
        The folder has no weights, or the hub id is neither cached nor downloadable (offline, no
        network, no such repository); the message says how to pass a local folder instead.
    """
    p = Path(model).expanduser()
    if p.is_dir():
        weights = find_hf_weights(p)
        if not weights:
            raise EncoderError(
                f"{encoder_name}: folder {p} holds no model.safetensors / pytorch_model.bin; "
                "expected a folder written by save_pretrained"
            )
        digests = [weights_sha256(w) for w in weights]
        if len(digests) == 1:
            return p, digests[0]
        import hashlib

        return p, hashlib.sha256("".join(digests).encode()).hexdigest()
    repo_id = str(model)
    if os.path.isabs(repo_id) or repo_id.startswith((".", "~")) or repo_id.count("/") > 1:
        raise EncoderError(
            f"{encoder_name}: model folder {repo_id} does not exist; pass an existing local folder "
            f"(written by save_pretrained) or a hub id such as 'org/name'"
        )
    is_offline = hub_offline(offline)
    hint = (
        f"Download it on a machine with internet (e.g. `huggingface-cli download {repo_id} "
        f"--local-dir /path/to/folder`) and pass the folder: "
        f"fewmm.encoders.create({encoder_name!r}, model='/path/to/folder')"
    )
    try:
        from huggingface_hub import snapshot_download

        kw: dict[str, Any] = dict(
            repo_id=repo_id, revision=revision, cache_dir=cache_dir, local_files_only=is_offline
        )
        folder = Path(snapshot_download(allow_patterns=_HF_PATTERNS, **kw))
        if not find_hf_weights(folder):
            folder = Path(snapshot_download(allow_patterns=_HF_BIN_PATTERNS, **kw))
    except Exception as e:  # LocalEntryNotFoundError, RepositoryNotFoundError, connection errors
        why = "is not in the local hub cache and HF_HUB_OFFLINE is set" if is_offline else "could not be downloaded"
        raise EncoderError(
            f"{encoder_name}: hub model {repo_id!r} {why} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            f"{hint}"
        ) from None
    if not find_hf_weights(folder):
        raise EncoderError(f"{encoder_name}: hub model {repo_id!r} has no weights in {folder}. {hint}")
    commit = folder.name  # snapshot folders are named by the commit hash
    return folder, f"hub:{repo_id}@{commit}"


def to_pil_rgb(payload: Any):
    """Image payload -> PIL RGB image (grayscale is replicated to 3 channels)."""
    from PIL import Image

    from ..data.io import read_image

    arr = read_image(payload)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def to_pil_gray(payload: Any):
    """Image payload -> PIL 8-bit grayscale image (ITU-R 601-2 luma for colour, as PIL's ``convert("L")``)."""
    from PIL import Image

    from ..data.io import read_image

    arr = read_image(payload)
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), mode="L")
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB").convert("L")


def resize_center_crop(img, size: int, resample: int):
    """Resize so the shorter side is ``size`` pixels, then centre-crop to (size, size)."""
    w, h = img.size
    if w == h:
        return img.resize((size, size), resample=resample) if w != size else img
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), resample=resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers' "Loading weights" progress bars and info logs while loading a model."""
    import transformers.utils.logging as tlog

    was_enabled = tlog.is_progress_bar_enabled()
    level = tlog.get_verbosity()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if was_enabled:
            tlog.enable_progress_bar()


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of ``x`` (n, d) as float32, divided by their L2 norm (:func:`fewmm.util.l2_normalize`)."""
    return unit_rows(x.float(), eps)
