"""Saving and loading adapters (``adapter.json`` + ``adapter.safetensors``, no pickle) and the
Hugging Face hub conventions; mixed into :class:`fewmm.adapter.Adapter`."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..data.table import MODALITIES
from ..errors import FeatureError, FewmmError
from ..util import atomic_write, atomic_write_text, sha256_file
from .format import CONFIG_NAME, FORMAT, FORMAT_VERSION, TENSORS_NAME, AdapterError, encoder_spec


class AdapterPersistence:
    """:meth:`save`, :meth:`load` and ``from_pretrained`` of :class:`~fewmm.adapter.Adapter`."""

    def save(self, path) -> Path:
        """Write the adapter to the folder ``path`` (created; files replaced atomically).

        Returns
        -------
        pathlib.Path of the folder.
        """
        from safetensors.torch import save_file

        import fewmm

        self._check_fitted()
        out = Path(path)
        if out.exists() and not out.is_dir():
            raise AdapterError(f"{out}: exists and is not a folder; an adapter is saved as a folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AdapterError(f"{out}: cannot create the adapter folder: {e}") from None
        s = self._support
        tensors = {f"support.{m}": s.features[m].contiguous() for m in s.modalities}
        tensors["support.mask"] = s.mask.to(torch.uint8).contiguous()
        tensors["support.labels"] = torch.as_tensor(self._y, dtype=torch.int64)
        if self._kind == "head":
            for k, v in self.head_.state_dict().items():
                tensors[f"head.{k}"] = v.detach().cpu().contiguous()
        atomic_write(out / TENSORS_NAME, lambda p: save_file(tensors, str(p)), mode=0o644)
        st = out / TENSORS_NAME
        if self._kind == "head":
            head_cfg = {"kind": "head", **self.head_.config()}
        else:
            head_cfg = {"kind": "method", "name": self.head, "hparams": dict(self.head_params or {})}
        is_int = self.classes_.dtype.kind in "iu"
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fewmm_version": fewmm.__version__,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "encoders": {
                m: {"name": e.name, "options": encoder_spec((self.encoders or {}).get(m, e.name))[1], "weights_id": e.weights_id,
                    "preprocess": e.preprocess_id, "dim": e.dim}
                for m, e in self.encoders_.items()
            },
            "modalities": list(self.modalities_),
            "head": head_cfg,
            "classes": [int(c) if is_int else str(c) for c in self.classes_],
            "classes_type": "int" if is_int else "str",
            "n_support": int(self.n_support_),
            "weight_names": list(self.weight_names_),
            "tensors": {"file": TENSORS_NAME, "sha256": sha256_file(st), "bytes": st.stat().st_size},
        }
        atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, path, device: str = "cpu", check_weights: bool = True) -> "Adapter":
        """Load an adapter saved by :meth:`save`.

        Parameters
        ----------
        path : folder (or its ``adapter.json``)
        device : str, default "cpu"
        check_weights : bool, default True
            Refuse an adapter whose encoder weights id or preprocessing differs from the installed
            encoder's (its features would not match the stored support features).

        Raises
        ------
        AdapterError
            No adapter there; ``adapter.json`` unreadable or not an adapter; a format version newer
            than this fewmm reads; ``adapter.safetensors`` missing, truncated or modified (size /
            sha256 differ from the ones recorded); tensors missing or of the wrong shape; encoder
            weights / preprocessing differing from the installed ones.
        """
        from safetensors.torch import load_file

        try:
            torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device {device!r} is not a torch device (e.g. 'cpu', 'cuda'): {e}") from None
        folder = Path(path)
        if folder.name == CONFIG_NAME:
            folder = folder.parent
        cfg_path = folder / CONFIG_NAME
        if not cfg_path.is_file():
            raise AdapterError(f"{folder}: no adapter here ({CONFIG_NAME} not found); save one with Adapter.save or "
                               "`python -m fewmm.adapt fit --out FOLDER`")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AdapterError(f"{cfg_path}: not a readable adapter config (truncated or edited?): {e}") from None
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise AdapterError(f"{cfg_path}: not a fewmm adapter (format {cfg.get('format') if isinstance(cfg, dict) else None!r}, "
                               f"expected {FORMAT!r})")
        ver = cfg.get("format_version")
        if not isinstance(ver, int) or ver < 1:
            raise AdapterError(f"{cfg_path}: bad format_version {ver!r}")
        if ver > FORMAT_VERSION:
            raise AdapterError(
                f"{cfg_path}: adapter format version {ver} was written by a newer fewmm ({cfg.get('fewmm_version')}); "
                f"this fewmm reads versions up to {FORMAT_VERSION}: upgrade fewmm (pip install -U fewmm)"
            )
        missing = [k for k in ("encoders", "modalities", "head", "classes", "tensors") if k not in cfg]
        if missing:
            raise AdapterError(f"{cfg_path}: incomplete adapter config (missing {missing})")
        try:
            tinfo = cfg["tensors"]
            fname = tinfo["file"]
            want_sha, want_bytes = tinfo["sha256"], int(tinfo["bytes"])
        except (KeyError, TypeError, ValueError) as e:
            raise AdapterError(f"{cfg_path}: incomplete 'tensors' entry in the adapter config ({type(e).__name__}: {e})") from None
        _check_config(cfg, cfg_path)
        st = folder / fname
        if not st.is_file():
            raise AdapterError(f"{st}: missing (the adapter's tensors); copy the whole adapter folder")
        size = st.stat().st_size
        if size != want_bytes:
            raise AdapterError(f"{st}: {size} bytes, but the adapter recorded {want_bytes}: the file is truncated or "
                               "replaced; save the adapter again")
        if sha256_file(st) != want_sha:
            raise AdapterError(f"{st}: sha256 differs from the one recorded in {CONFIG_NAME}: the file was modified; "
                               "save the adapter again")
        try:
            tensors = load_file(str(st))
        except Exception as e:
            raise AdapterError(f"{st}: not a readable safetensors file: {e}") from None

        try:
            return cls._build_loaded(folder, cfg_path, st, cfg, tensors, device, check_weights)
        except (FewmmError, FileNotFoundError):
            raise
        except Exception as e:  # a config / tensors combination the checks above did not foresee
            raise AdapterError(f"{folder}: cannot rebuild the adapter from its files ({type(e).__name__}: {e})") from None

    @classmethod
    def _build_loaded(cls, folder, cfg_path, st, cfg, tensors, device, check_weights) -> "Adapter":
        import fewmm.heads as H
        from ..multimodal import MMFeatures

        enc_cfg, mods, head_cfg, classes = cfg["encoders"], tuple(cfg["modalities"]), cfg["head"], cfg["classes"]
        ad = cls(encoders={m: {"name": c["name"], **c["options"]} if c.get("options") else c["name"] for m, c in enc_cfg.items()},
                 head=head_cfg["name"] if head_cfg.get("kind") == "method" else None,
                 head_params=head_cfg.get("hparams") or None, device=device)
        ad.encoders_ = ad._make_encoders(set(mods))
        ad.modalities_ = tuple(ad.encoders_)
        if ad.modalities_ != mods:
            raise AdapterError(f"{cfg_path}: modalities {list(mods)} do not match the encoders {list(enc_cfg)}")
        if check_weights:
            for m, e in ad.encoders_.items():
                c = enc_cfg[m]
                for key, have in (("weights_id", e.weights_id), ("preprocess", e.preprocess_id)):
                    if c.get(key) != have:
                        raise AdapterError(
                            f"{folder}: the {m} encoder {c['name']!r} installed here has {key} {have!r}, but the adapter was "
                            f"fitted with {c.get(key)!r}: its features would not match. Install the same encoder weights, "
                            "or fit the adapter again (Adapter.load(..., check_weights=False) skips this check)"
                        )
        try:
            feats = {m: tensors[f"support.{m}"] for m in mods}
            mask = tensors["support.mask"]
            lab = tensors["support.labels"]
        except KeyError as e:
            raise AdapterError(f"{st}: tensor {e} missing") from None
        if lab.ndim != 1 or lab.dtype != torch.int64:
            raise AdapterError(f"{st}: support.labels must be a 1-d int64 tensor, got {lab.dtype} {tuple(lab.shape)}")
        y = lab.numpy()
        n = y.shape[0]
        if mask.dtype != torch.uint8 or tuple(mask.shape) != (n, len(mods)):
            raise AdapterError(f"{st}: support.mask must be uint8 of shape ({n}, {len(mods)}), got {mask.dtype} {tuple(mask.shape)}")
        mask = mask.bool()
        for m in mods:
            if feats[m].dtype != torch.float32:
                raise AdapterError(f"{st}: support.{m} must be float32, got {feats[m].dtype}")
        if n == 0 or sorted(set(y.tolist())) != list(range(len(classes))):
            raise AdapterError(f"{st}: support.labels must give every one of the {len(classes)} classes at least one item")
        extra = sorted(k for k in tensors if not k.startswith("head.") and k not in {f"support.{m}" for m in mods} | {"support.mask", "support.labels"})
        if extra:
            raise AdapterError(f"{st}: unexpected tensors {extra[:5]}")
        for m in mods:
            if tuple(feats[m].shape) != (n, ad.encoders_[m].dim):
                raise AdapterError(f"{st}: support.{m} has shape {tuple(feats[m].shape)}, expected ({n}, {ad.encoders_[m].dim})")
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise AdapterError(f"{st}: support.labels outside 0..{len(classes) - 1}")
        try:
            support = MMFeatures(feats, mask, mods, y, [str(c) for c in classes])
        except FeatureError as e:
            raise AdapterError(f"{st}: {e}") from None
        if head_cfg.get("kind") == "head":
            head = H.create(head_cfg["name"], head_cfg["dims"], head_cfg["modalities"], seed=0, **head_cfg.get("hparams", {}))
            state = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
            try:
                head.load_state_dict(state)
            except RuntimeError as e:
                raise AdapterError(f"{st}: the head's parameters do not fit head {head_cfg['name']!r}: {str(e).splitlines()[0]}") from None
            # a fixed head is named again (as given to the constructor); a trained one stays an object
            ad.head = head if head.trainable else (f"single:{head.hparams['modality']}" if head.name == "single" else head.name)
            if not head.trainable:
                ad.head_params = {k: v for k, v in head.hparams.items() if k != "modality"} or None
        ad.classes_ = np.asarray(classes, dtype=np.int64 if cfg.get("classes_type") == "int" else str)
        ad.n_support_ = int(n)
        ad._fit_features(support, y)
        return ad

    # -- huggingface_hub conventions (ModelHubMixin) ------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, device: str = "cpu", **kwargs) -> "Adapter":
        """Load from a local adapter folder (as :meth:`load`) or a hub repo id (downloaded with
        ``huggingface_hub``; needs the network). Keyword arguments as ModelHubMixin's."""
        name = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(name):
            return cls.load(name, device=device)
        if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise AdapterError(f"{name}: no adapter folder here (and not a hub repo id 'owner/name')")
        return super().from_pretrained(pretrained_model_name_or_path, device=device, **kwargs)

    def _save_pretrained(self, save_directory) -> None:
        self.save(save_directory)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision=None, cache_dir=None, force_download: bool = False,
                         local_files_only: bool = False, token=None, device: str = "cpu", **model_kwargs) -> "Adapter":
        """``Adapter.from_pretrained(folder_or_repo_id)``: a local folder is loaded as is; a hub repo
        id is downloaded with ``huggingface_hub.snapshot_download`` (needs the network)."""
        if os.path.isdir(model_id):
            return cls.load(model_id, device=device)
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                   local_files_only=local_files_only, token=token)
        return cls.load(folder, device=device)


def _check_config(cfg: dict, where) -> None:
    """AdapterError naming the key when ``adapter.json`` has the wrong types or values."""

    def bad(key, want, got):
        raise AdapterError(f"{where}: {key!r} must be {want}, got {json.dumps(got)[:120]}")

    v = cfg.get("format_version")
    if isinstance(v, bool):
        bad("format_version", "an integer", v)
    enc = cfg["encoders"]
    if not isinstance(enc, dict) or not enc:
        bad("encoders", "an object modality -> {name, options, weights_id, ...}", enc)
    for m, c in enc.items():
        if m not in MODALITIES:
            bad("encoders", f"keyed by modalities {list(MODALITIES)}", list(enc))
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("options", {}), dict):
            bad(f"encoders.{m}", "an object with a str 'name' and an object 'options'", c)
    mods = cfg["modalities"]
    if not isinstance(mods, list) or sorted(mods) != sorted(enc) or len(set(mods)) != len(mods):
        bad("modalities", f"the list of the encoders' modalities {sorted(enc)}", mods)
    head = cfg["head"]
    if not isinstance(head, dict) or head.get("kind") not in ("head", "method") or not isinstance(head.get("name"), str):
        bad("head", "an object with 'kind' ('head' or 'method') and a str 'name'", head)
    if not isinstance(head.get("hparams", {}), dict):
        bad("head.hparams", "an object", head.get("hparams"))
    if head["kind"] == "head" and (not isinstance(head.get("dims"), dict) or not isinstance(head.get("modalities"), list)):
        bad("head", "an object with 'dims' and 'modalities' for kind 'head'", head)
    classes, ctype = cfg["classes"], cfg.get("classes_type")
    if ctype not in ("int", "str"):
        bad("classes_type", "'int' or 'str'", ctype)
    kind = int if ctype == "int" else str
    if (not isinstance(classes, list) or len(classes) < 2 or any(isinstance(c, bool) or not isinstance(c, kind) for c in classes)
            or classes != sorted(classes) or len(set(classes)) != len(classes)):
        bad("classes", f"a sorted list of at least 2 distinct {ctype} values", classes)
    fname = cfg["tensors"]["file"]
    if not isinstance(fname, str) or Path(fname).name != fname or fname in ("", ".", ".."):
        bad("tensors.file", "a file name inside the adapter folder", fname)


__all__ = ["Adapter", "AdapterError", "as_items", "DEFAULT_ENCODERS", "FORMAT_VERSION"]
