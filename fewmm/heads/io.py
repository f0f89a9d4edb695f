"""Saving, loading and checking fusion-head checkpoints.

A head checkpoint is ``<stem>.safetensors`` (the state dict) + ``<stem>.json`` (name,
hyper-parameters, modalities, feature dims, encoder weights ids, plus what the writer adds), the
layout of :mod:`fewmm.engine.checkpoint` (``best.*`` of a training run is one). Written
atomically; read back without pickle.

Encoder weights ids are read from ``MMFeatures.info["encoders"]``: a mapping modality ->
``Encoder.cache_key`` (``{"encoder", "weights_id", "preprocess"}``) or modality -> id string, plus
``"class_text"`` for the class-text encoder; see :func:`encoder_ids`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from safetensors.torch import load_file, save_file

from ..engine.checkpoint import atomic_write, state_tensors
from ..errors import CheckpointError
from ..multimodal import MMFeatures
from .base import FusionHead

#: Format tag of head checkpoints written by :func:`save_head` (unchanged since before the engine).
FORMAT = "fewmm-head-checkpoint/1"

__all__ = ["FORMAT", "encoder_ids", "head_meta", "check_encoders", "check_head_checkpoint", "save_head", "load_head", "CheckpointError"]


def encoder_ids(info: dict | None) -> dict[str, str]:
    """Encoder weights ids per modality from ``MMFeatures.info``.

    Reads ``info["encoders"]``: modality -> ``Encoder.cache_key`` (``{"encoder": name,
    "weights_id": id, "preprocess": ...}``) or modality -> str; also ``info["weights_ids"]``
    (modality -> id). Use the key ``"class_text"`` for the class-text encoder.

    Returns
    -------
    dict of str to str, e.g. ``{"image": "efficientnet-lite2:3f2a... (rgb,260px)"}``; empty if
    none recorded.
    """
    out: dict[str, str] = {}
    if not isinstance(info, dict):
        return out
    enc = info.get("encoders") or {}
    if isinstance(enc, dict):
        for k, v in enc.items():
            if isinstance(v, dict):
                wid = v.get("weights_id")
                if wid is None:
                    continue
                name = v.get("encoder") or v.get("name")
                ident = f"{name}:{wid}" if name else str(wid)
                if v.get("preprocess"):
                    ident += f" ({v['preprocess']})"
                out[str(k)] = ident
            elif v is not None:
                out[str(k)] = str(v)
    for k, v in (info.get("weights_ids") or {}).items():
        out.setdefault(str(k), str(v))
    return out


def check_encoders(saved: dict, features: MMFeatures, used, where: str) -> None:
    now = encoder_ids(features.info)
    for m in used:
        a, b = saved.get(m), now.get(m)
        if a is not None and b is not None and a != b:
            raise CheckpointError(
                f"{where} was trained on modality {m!r} features from encoder weights {a!r}, but these features come from {b!r}"
            )
        if a is not None and b is None:
            warnings.warn(f"{where}: features carry no encoder weights id for {m!r} (checkpoint: {a!r}); cannot verify", stacklevel=3)


def head_meta(head: FusionHead, features: MMFeatures) -> dict:
    ids = encoder_ids(features.info)
    used = list(head.modalities) + (["class_text"] if head.text_dim is not None else [])
    return {**head.config(), "encoders": {m: ids[m] for m in used if m in ids}}


def check_head_checkpoint(meta: dict, head: FusionHead | None = None, features: MMFeatures | None = None, where: str = "checkpoint") -> None:
    """Raise CheckpointError if a checkpoint's head/features do not match ``head`` / ``features``.

    Checks the head name, hyper-parameters, modalities and feature dims, and the encoder weights
    ids (when both the checkpoint and ``features.info`` record them).
    """
    if head is not None:
        cfg = head.config()
        if meta.get("name") != cfg["name"]:
            raise CheckpointError(f"{where} holds head {meta.get('name')!r}, not {cfg['name']!r}")
        if list(meta.get("modalities", [])) != cfg["modalities"]:
            raise CheckpointError(f"{where} was trained on modalities {meta.get('modalities')}, the head has {cfg['modalities']}")
        if dict(meta.get("dims", {})) != cfg["dims"]:
            raise CheckpointError(f"{where} was trained on feature dims {meta.get('dims')}, the head has {cfg['dims']}")
        if dict(meta.get("hparams", {})) != cfg["hparams"]:
            raise CheckpointError(f"{where} has hyper-parameters {meta.get('hparams')}, the head has {cfg['hparams']}")
    if features is not None:
        dims = features.dims
        for m, d in meta.get("dims", {}).items():
            if m not in dims:
                raise CheckpointError(f"{where} needs {'class text' if m == 'class_text' else f'modality {m!r}'} (dim {d}); the features have {dims}")
            if dims[m] != d:
                raise CheckpointError(f"{where} was trained on {m!r} features of dim {d}, these have dim {dims[m]}")
        check_encoders(meta.get("encoders", {}), features, list(meta.get("dims", {})), where)


def save_head(head: FusionHead, path, features: MMFeatures | None = None, extra: dict | None = None) -> Path:
    """Save a head: ``<path>.safetensors`` (state dict) + ``<path>.json`` (name, hparams, dims,
    modalities, encoder weights ids from ``features.info``, ``extra``).

    Parameters
    ----------
    path : str or Path
        Without suffix, or ending in ``.safetensors``.

    Returns
    -------
    Path of the ``.safetensors`` file.
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        p = p.with_suffix("")
    p.parent.mkdir(parents=True, exist_ok=True)
    meta = head.config() if features is None else head_meta(head, features)
    meta = {"format": FORMAT, **meta, **(extra or {})}
    atomic_write(p.with_suffix(".safetensors"), lambda t: save_file(state_tensors(head), str(t)))
    atomic_write(p.with_suffix(".json"), lambda t: t.write_text(json.dumps(meta, indent=1, sort_keys=True)))
    return p.with_suffix(".safetensors")


def _meta_path(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        p = p / "best"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def load_head(path, features: MMFeatures | None = None, head: FusionHead | None = None, device=None) -> FusionHead:
    """Load a head saved by :func:`save_head`, :func:`fewmm.train.train_head` or :func:`fewmm.engine.fit`.

    Parameters
    ----------
    path : str or Path
        A checkpoint directory (loads its ``best``), or a ``.safetensors`` / ``.json`` path / stem.
    features : MMFeatures, optional
        Check the checkpoint against them: modalities, dims, encoder weights ids.
    head : FusionHead, optional
        Load into this head (its name, hyper-parameters and dims must match); default: build it
        with :func:`fewmm.heads.create` from the stored name and hyper-parameters.
    device : optional

    Raises
    ------
    CheckpointError
        Another head, other feature dims, other encoder weights ids; a truncated or damaged file.
    FileNotFoundError
    """
    st, js = _meta_path(path)
    if not js.exists() or not st.exists():
        raise FileNotFoundError(f"no head checkpoint at {st} / {js}")
    try:
        meta = json.loads(js.read_text())
        hm = meta.get("head", meta)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise CheckpointError(f"{js}: not a readable head checkpoint description (truncated or edited?): {e}") from None
    check_head_checkpoint(hm, head, features, where=f"checkpoint {js}")
    if head is None:
        try:
            from . import create as create_head

            head = create_head(hm["name"], hm["dims"], hm["modalities"], **hm.get("hparams", {}))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{js}: incomplete head description ({type(e).__name__}: {e})") from None
    try:
        state = load_file(str(st))
    except Exception as e:  # safetensors raises SafetensorError on truncated / garbled files
        raise CheckpointError(f"{st}: not a readable safetensors file (truncated or damaged?): {e}") from None
    for prefix in ("model.", "head."):  # engine last.* / checkpoints written before the engine
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{st}: the tensors do not fit head {head.name!r}: {str(e).splitlines()[0]}") from None
    if device is not None:
        head.to(device)
    return head
