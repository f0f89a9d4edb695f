"""One checkpoint layout for everything the engine trains: ``<stem>.safetensors`` (tensors) +
``<stem>.json`` (description), both written atomically (temporary file + ``os.replace``).

A run directory holds ``last.*`` (model under ``model.*``, optimiser state under ``optim.*``,
trainer parameters such as Meta-SGD's rates under ``trainer.*``; the JSON holds the step, RNG
states, best-so-far, patience counter, history, configuration) and ``best.*`` (the model's state
dict with no prefix, and the learner's description: for a fusion head,
:func:`fewmm.train.load_head` reads it).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

FORMAT = "fewmm-engine-checkpoint/1"
#: Formats of checkpoints written before the engine (``last.*`` of ``train_head``).
OLD_FORMATS = ("fewmm-head-checkpoint/1",)

__all__ = ["FORMAT", "CheckpointError", "atomic_write", "state_tensors", "optimizer_tensors", "load_optimizer",
           "rng_state", "set_rng_state", "save_checkpoint", "read_checkpoint"]


def atomic_write(path, write) -> None:
    """Call ``write(tmp_path)`` then atomically rename ``tmp_path`` to ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies of ``module.state_dict()``."""
    return {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "optim.") -> tuple[dict, dict]:
    """Split ``opt.state_dict()`` into tensors (``{prefix}{i}.{key}``) and a JSON-able rest."""
    sd = opt.state_dict()
    tensors, other = {}, {"param_groups": sd["param_groups"], "state": {}}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}{i}.{k}"] = v.detach().cpu().clone().contiguous()
            else:
                other["state"].setdefault(str(i), {})[k] = v
    return tensors, other


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, other: dict, prefix: str = "optim.") -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix):
            i, k = key[len(prefix):].split(".", 1)
            state.setdefault(int(i), {})[k] = v
    for i, st in other.get("state", {}).items():
        state.setdefault(int(i), {}).update(st)
    groups = other["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> dict:
    """The global torch and numpy RNG states, JSON-serialisable."""
    return {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
    }


def set_rng_state(d: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    if "torch" in d:
        torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(d["torch"])), dtype=torch.uint8))
    if "numpy" in d:
        np.random.set_state(("MT19937", np.asarray(d["numpy"], dtype=np.uint32), int(d.get("numpy_pos", 624)), 0, 0.0))


def save_checkpoint(stem, tensors: dict, meta: dict) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically (tensors first); returns the
    ``.safetensors`` path."""
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    atomic_write(st, lambda t: save_file(tensors, str(t)))
    atomic_write(js, lambda t: t.write_text(json.dumps(meta, indent=1, sort_keys=True)))
    return st


def read_checkpoint(stem) -> tuple[dict, dict]:
    """Read ``<stem>.safetensors`` + ``<stem>.json`` -> (tensors, meta).

    Raises
    ------
    FileNotFoundError
        Either file is missing.
    CheckpointError
        A truncated or garbled file.
    """
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not st.exists() or not js.exists():
        raise FileNotFoundError(f"no checkpoint at {st} / {js}")
    try:
        meta = json.loads(js.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{js}: not a readable checkpoint description (truncated or edited?): {e}") from None
    try:
        tensors = load_file(str(st))
    except Exception as e:  # safetensors raises SafetensorError on truncated / garbled files
        raise CheckpointError(f"{st}: not a readable safetensors file (truncated or damaged?): {e}") from None
    return tensors, meta
