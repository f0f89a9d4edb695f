"""Save and load fitted components without pickle: safetensors for tensors, JSON for the rest.

:func:`save` writes a folder holding two files::

    state.json          format, version, the object's description (class, hyper-parameters,
                        fitted attributes) and the sha256 of the tensor file
    state.safetensors   every tensor / numeric array, one entry each

:func:`load` rebuilds the object from them: classes are imported by name and built from their
hyper-parameters (scikit-learn's ``get_params`` / ``cls(**params)``; fusion heads through
:func:`fewmm.heads.create` with their :meth:`~fewmm.heads.base.FusionHead.config`), then the
fitted attributes are set back. Nothing is unpickled, so a saved file cannot run code on load;
loading does import the module that defines each class (a fewmm module or a plugin's).

What can be saved: ``None``, ``bool``, ``int``, ``float``, ``str``; lists, tuples and dicts of
them (dict keys of any of these kinds); :class:`torch.Tensor`; numpy arrays (numeric, string or
object) and numpy scalars; scikit-learn estimators (every :class:`fewmm.methods.FewShotMethod`,
:class:`fewmm.heads.HeadClassifier`, :class:`sklearn.linear_model.LogisticRegression`, ...);
fusion heads; :class:`torch.nn.Sequential` / :class:`~torch.nn.Linear` and parameter-free
activation modules; :class:`fewmm.meta.MAML` (its head as above, its :meth:`~fewmm.meta.MAML.config`
and its state dict, which holds Meta-SGD's learned inner learning rates). Anything else raises :class:`~fewmm.errors.PersistError` naming the
attribute (``clf_.foo``) and its type.

An estimator class may list attributes that are caches, rebuilt on demand, in a class attribute
``transient_attributes`` (a tuple of names): they are saved as ``None``.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import PersistError
from .util import atomic_write, atomic_write_text, sha256_file

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION", "STATE_JSON", "STATE_TENSORS"]

FORMAT = "fewmm-state"
FORMAT_VERSION = 1
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"

#: parameter-free torch modules rebuilt by class name with no arguments
_PLAIN_MODULES = ("ReLU", "GELU", "Tanh", "Sigmoid", "Identity", "SiLU", "ELU", "LeakyReLU", "Softplus")


def _qualname(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(spec: str, where: str):
    mod, _, qual = spec.partition(":")
    try:
        obj = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise PersistError(f"{where}: class {spec!r} cannot be imported ({type(e).__name__}: {e}); install the package "
                           "that defines it, or register the plugin, before loading") from None
    if not isinstance(obj, type):
        raise PersistError(f"{where}: {spec!r} is not a class")
    return obj


class _Writer:
    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def tensor(self, t: torch.Tensor, where: str) -> str:
        key = f"t{len(self.tensors)}:{where}"[:200]
        self.tensors[key] = t.detach().cpu().clone().contiguous()
        return key

    def encode(self, v: Any, where: str) -> Any:
        from sklearn.base import BaseEstimator

        from .heads.base import FusionHead

        if v is None or isinstance(v, (bool, str)):
            return {"py": v}
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return {"py": v}
        if isinstance(v, np.generic):
            return {"npscalar": v.item(), "dtype": v.dtype.str}
        if isinstance(v, torch.Tensor):
            return {"tensor": self.tensor(v, where), "requires_grad": bool(v.requires_grad)}
        if isinstance(v, np.ndarray):
            if v.dtype.kind in "biuf":
                return {"ndarray": self.tensor(torch.from_numpy(np.ascontiguousarray(v)), where), "dtype": v.dtype.str}
            if v.dtype.kind in "US":
                return {"ndarray_str": v.tolist(), "dtype": v.dtype.str}
            if v.dtype.kind == "O":
                return {"ndarray_obj": [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v.reshape(-1).tolist())],
                        "shape": list(v.shape)}
            raise PersistError(f"{where}: numpy array of dtype {v.dtype} cannot be saved")
        if isinstance(v, (list, tuple)):
            return {"list" if isinstance(v, list) else "tuple": [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, dict):
            return {"dict": [[self.encode(k, f"{where}.key"), self.encode(x, f"{where}[{k!r}]")] for k, x in v.items()]}
        if isinstance(v, torch.dtype):
            return {"torch_dtype": str(v).removeprefix("torch.")}
        if isinstance(v, torch.device):
            return {"torch_device": str(v)}
        if isinstance(v, FusionHead):
            return {"head": v.config(), "state": self.encode(dict(v.state_dict()), f"{where}.state_dict"),
                    "training": bool(v.training), "requires_grad": self._grads(v)}
        if isinstance(v, nn.Module):
            from .meta import MAML

            if type(v) is MAML:  # its head + config; the state dict holds the head and Meta-SGD's rates
                return {"maml": v.config(), "head_module": self.module(v.head, f"{where}.head"),
                        "state": self.encode(dict(v.state_dict()), f"{where}.state_dict"),
                        "training": bool(v.training), "requires_grad": self._grads(v)}
            return self.module(v, where)
        if isinstance(v, BaseEstimator):
            params = v.get_params(deep=False)
            skip = set(getattr(type(v), "transient_attributes", ()))
            state = {k: (None if k in skip else x) for k, x in vars(v).items() if k not in params}
            return {"estimator": _qualname(v), "params": self.encode(params, f"{where}.params"),
                    "state": {"dict": [[{"py": k}, self.encode(x, f"{where}.{k}")] for k, x in state.items()]}}
        raise PersistError(f"{where}: a {type(v).__module__}.{type(v).__qualname__} cannot be saved without pickle "
                           "(supported: tensors, numpy arrays, JSON values, scikit-learn estimators, fusion heads, "
                           "fewmm.meta.MAML, nn.Sequential / nn.Linear / activations)")

    @staticmethod
    def _grads(m: nn.Module) -> list[str]:
        return [n for n, p in m.named_parameters() if p.requires_grad]

    def module(self, m: nn.Module, where: str) -> dict:
        name = type(m).__name__
        if type(m).__module__.startswith("torch.nn") and name in _PLAIN_MODULES and not list(m.parameters()):
            return {"torch_module": name}
        if type(m) is nn.Linear:
            return {"torch_module": "Linear", "in": m.in_features, "out": m.out_features, "bias": m.bias is not None,
                    "state": self.encode(dict(m.state_dict()), f"{where}.state_dict"), "training": bool(m.training),
                    "requires_grad": self._grads(m)}
        if type(m) is nn.Sequential:
            return {"torch_module": "Sequential", "children": [self.module(c, f"{where}[{i}]") for i, c in enumerate(m)],
                    "training": bool(m.training), "requires_grad": self._grads(m)}
        raise PersistError(f"{where}: torch module {type(m).__qualname__} cannot be saved without pickle "
                           "(supported: nn.Sequential, nn.Linear, parameter-free activations, fusion heads)")


class _Reader:
    def __init__(self, tensors: dict[str, torch.Tensor], where: str):
        self.tensors = tensors
        self.where = where

    def tensor(self, key: str) -> torch.Tensor:
        try:
            return self.tensors[key]
        except KeyError:
            raise PersistError(f"{self.where}: {STATE_TENSORS} has no tensor {key!r} named in {STATE_JSON}") from None

    def decode(self, node: Any) -> Any:
        if not isinstance(node, dict) or len(node) == 0:
            raise PersistError(f"{self.where}: malformed entry {str(node)[:80]!r} in {STATE_JSON}")
        if "py" in node:
            return node["py"]
        if "npscalar" in node:
            return np.array(node["npscalar"], dtype=np.dtype(node["dtype"]))[()]
        if "tensor" in node:
            return self.tensor(node["tensor"]).requires_grad_(bool(node.get("requires_grad", False)))
        if "ndarray" in node:
            return self.tensor(node["ndarray"]).numpy().astype(np.dtype(node["dtype"]), copy=False)
        if "ndarray_str" in node:
            return np.array(node["ndarray_str"], dtype=np.dtype(node["dtype"]))
        if "ndarray_obj" in node:
            out = np.empty(len(node["ndarray_obj"]), dtype=object)
            out[:] = [self.decode(x) for x in node["ndarray_obj"]]
            return out.reshape(node["shape"])
        if "list" in node:
            return [self.decode(x) for x in node["list"]]
        if "tuple" in node:
            return tuple(self.decode(x) for x in node["tuple"])
        if "dict" in node:
            return {self.decode(k): self.decode(v) for k, v in node["dict"]}
        if "torch_dtype" in node:
            return getattr(torch, node["torch_dtype"])
        if "torch_device" in node:
            return torch.device(node["torch_device"])
        if "head" in node:
            from . import heads as H

            cfg = node["head"]
            head = H.create(cfg["name"], cfg["dims"], cfg["modalities"], **cfg.get("hparams", {}))
            self._restore_module(head, node)
            return head
        if "torch_module" in node:
            return self.module(node)
        if "maml" in node:
            from .meta import MAML

            try:
                m = MAML(self.module(node["head_module"]), **node["maml"])
            except (TypeError, ValueError) as e:
                raise PersistError(f"{self.where}: the saved MAML config {node['maml']!r} cannot be rebuilt: {e}") from None
            self._restore_module(m, node)
            return m
        if "estimator" in node:
            from sklearn.base import BaseEstimator

            cls = _import(node["estimator"], self.where)
            if not issubclass(cls, BaseEstimator):
                raise PersistError(f"{self.where}: {node['estimator']!r} is not a scikit-learn estimator")
            obj = cls(**self.decode(node["params"]))
            for k, v in self.decode(node["state"]).items():
                setattr(obj, k, v)
            return obj
        raise PersistError(f"{self.where}: unknown entry kind {sorted(node)} in {STATE_JSON}")

    def _restore_module(self, m: nn.Module, node: dict) -> None:
        if "state" in node:
            missing, unexpected = m.load_state_dict(self.decode(node["state"]), strict=False)
            if missing or unexpected:
                raise PersistError(f"{self.where}: saved weights do not fit {type(m).__name__} "
                                   f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        m.train(bool(node.get("training", False)))
        grads = set(node.get("requires_grad", []))
        for n, p in m.named_parameters():
            p.requires_grad_(n in grads)

    def module(self, node: dict) -> nn.Module:
        name = node["torch_module"]
        if name in _PLAIN_MODULES:
            return getattr(nn, name)()
        if name == "Linear":
            m = nn.Linear(int(node["in"]), int(node["out"]), bias=bool(node["bias"]))
        elif name == "Sequential":
            m = nn.Sequential(*[self.module(c) for c in node["children"]])
        else:
            raise PersistError(f"{self.where}: unknown torch module {name!r} in {STATE_JSON}")
        self._restore_module(m, node)
        return m


def save(obj, path: str | os.PathLike) -> Path:
    """Save a fitted component (a method, a head classifier, a fusion head, ...) to the folder
    ``path`` (created), as ``state.json`` + ``state.safetensors``; no pickle.

    Parameters
    ----------
    obj : object
        What :func:`load` should give back (see the module notes for what can be saved).
    path : str or os.PathLike
        Folder; its two files are replaced atomically if they exist.

    Returns
    -------
    pathlib.Path : the folder.

    Raises
    ------
    PersistError
        Something in ``obj`` cannot be saved without pickle (the message names the attribute
        path, e.g. ``ProtoNet.prototypes_``, and its type); the folder cannot be written.
    """
    from safetensors.torch import save_file

    out = Path(path)
    w = _Writer()
    root = w.encode(obj, type(obj).__name__)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / STATE_TENSORS, lambda p: save_file(w.tensors, str(p)), mode=0o644)
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "object": root,
               "tensors": {"file": STATE_TENSORS, "sha256": sha256_file(out / STATE_TENSORS)}}
        atomic_write_text(out / STATE_JSON, json.dumps(doc, indent=1) + "\n")
    except OSError as e:
        raise PersistError(f"{out}: cannot write the saved state: {e}") from None
    return out


def load(path: str | os.PathLike):
    """Load what :func:`save` wrote in the folder ``path``.

    Returns
    -------
    object : equal in behaviour to the saved one (same predictions).

    Raises
    ------
    PersistError
        The folder or one of its files is missing; not a ``fewmm-state`` file; a newer format
        version; the tensor file does not match the sha256 recorded beside it (edited or
        truncated); a class cannot be imported; saved weights do not fit the rebuilt module.
    """
    from safetensors.torch import load_file

    folder = Path(path)
    js, st = folder / STATE_JSON, folder / STATE_TENSORS
    for f in (js, st):
        if not f.is_file():
            raise PersistError(f"{folder}: no {f.name}; expected a folder written by fewmm.persist.save")
    try:
        doc = json.loads(js.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PersistError(f"{js}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PersistError(f"{js}: not a {FORMAT} file (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > FORMAT_VERSION:
        raise PersistError(f"{js}: format version {doc.get('format_version')!r} is newer than this fewmm reads "
                           f"({FORMAT_VERSION}); upgrade fewmm")
    want = (doc.get("tensors") or {}).get("sha256")
    got = sha256_file(st)
    if want != got:
        raise PersistError(f"{st}: sha256 {got} does not match {want} recorded in {js.name}: the file was changed "
                           "or truncated after saving; save again")
    try:
        tensors = load_file(str(st))
    except Exception as e:  # not a safetensors file
        raise PersistError(f"{st}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    return _Reader(tensors, str(folder)).decode(doc["object"])
