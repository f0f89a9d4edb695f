"""Reusable few-shot adapters: frozen encoders + a fusion head (or a few-shot method), fitted on a
handful of labelled items, saved, loaded and used to predict.

>>> from fewmm import Adapter
>>> ad = Adapter(encoders={"audio": "whisper-tiny-en"}).fit(["a1.wav", "a2.wav", ...], ["ann", "bob", ...])
>>> ad.predict(["new.wav"]), ad.predict_proba(["new.wav"]), ad.explain(["new.wav"])
>>> ad.save("my_adapter/");  ad2 = Adapter.load("my_adapter/")

It is a scikit-learn classifier (``ClassifierMixin`` + ``BaseEstimator``) whose ``X`` is a list
of items: the constructor only stores its arguments (checked at ``fit``), ``get_params`` /
``set_params`` / ``sklearn.base.clone`` work, ``fit`` returns ``self``, ``score`` is accuracy,
fitted attributes end with ``_`` (``classes_``, ``modalities_``, ``encoders_``,
``weight_names_``). So it runs inside a ``Pipeline``, under ``cross_val_score`` with
``StratifiedKFold`` on a list of file paths or item dicts, and in ``GridSearchCV`` (see the README,
"With scikit-learn"; ``tests/test_sklearn.py``). Each ``fit`` embeds its items again (encoders
are frozen, so clones give the same features).

Items
-----
``items`` is a sequence of items, or a manifest (the path of a ``.csv`` / ``.tsv`` / ``.jsonl``
manifest, see :mod:`fewmm.data.manifest`, or an :class:`~fewmm.data.table.ItemTable`). One item is

* a ``dict`` with any of the keys ``"image"``, ``"audio"``, ``"text"`` (an item may lack
  modalities; it needs one the adapter has an encoder for);
* a path (``str`` / ``os.PathLike`` / :class:`~fewmm.data.table.FileRef`): an image (.png .jpg
  .jpeg .bmp .gif .webp .tif .tiff), audio (.wav .flac .ogg .mp3) or UTF-8 text (.txt) file, by
  its extension;
* any other ``str``: inline text;
* a ``PIL.Image.Image`` or a ``numpy.ndarray`` of shape (H, W) or (H, W, 3) (pixels): an image;
* an ``(waveform, sample_rate_hz)`` tuple or an :class:`~fewmm.data.table.AudioClip`: audio.

Heads
-----
``head`` names a fusion head of :mod:`fewmm.heads` that needs no training (``avg-proto``,
``concat``, ``single:<modality>``), or a few-shot method of :mod:`fewmm.methods`
(``protonet``, ``protonet-cosine``, ``linear-probe``, ``knn``, ``simpleshot``) for one-modality
adapters, or is a :class:`~fewmm.heads.base.FusionHead` instance, e.g. a head meta-trained on
base classes with :func:`fewmm.train.train_head` (its trained parameters are saved with the
adapter). Class-text heads (``am3``) are not supported by adapters.

Saved format (a folder)
-----------------------
``adapter.json``: format name and version, fewmm version, encoders (name, options, weights id,
preprocessing, dim), head (name, hyper-parameters), classes, and the sha256 and size of
``adapter.safetensors``, which holds the support features (``support.<modality>`` (n, d_m)
float32, ``support.mask`` (n, n_mod) uint8, ``support.labels`` (n,) int64) and the head's
parameters (``head.<name>``). No pickle. Loading re-fits the head on the stored support features,
so predictions after loading equal those before saving.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from .data.io import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from .data.table import MODALITIES, AudioClip, FileRef, ItemTable
from .errors import DataError, FeatureError, FewmmError
from .util import atomic_write, atomic_write_text, check_item_labels, check_query_classes, sha256_file

#: Name and version of the saved format; :meth:`Adapter.load` refuses newer versions.
FORMAT = "fewmm-adapter"
FORMAT_VERSION = 1
CONFIG_NAME = "adapter.json"
TENSORS_NAME = "adapter.safetensors"

#: Encoders used for a modality when ``encoders`` does not name one (all run offline here).
DEFAULT_ENCODERS = {"image": "efficientnet-lite2", "audio": "whisper-tiny-en", "text": "minilm-l6"}
MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson")
TEXT_EXTENSIONS = (".txt",)
_METHOD_HEADS = ("protonet", "protonet-cosine", "linear-probe", "knn", "simpleshot")

try:  # huggingface_hub's conventions: save_pretrained / from_pretrained / push_to_hub
    from huggingface_hub import ModelHubMixin as _HubMixin
except Exception:  # pragma: no cover - huggingface_hub comes with transformers
    _HubMixin = object


class AdapterError(FewmmError, ValueError):
    """A saved adapter cannot be used: missing or damaged files, a newer format, other encoder
    weights than the ones installed; or an adapter used before ``fit``."""


# ------------------------------------------------------------------------------------------------
# items
# ------------------------------------------------------------------------------------------------
def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"array{tuple(x.shape)}"
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray):
        return f"(waveform{tuple(x[0].shape)}, {x[1]} Hz)"
    s = str(x)
    return s if len(s) <= 80 else s[:77] + "..."


def _path_modality(suffix: str) -> str | None:
    suffix = suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if suffix in TEXT_EXTENSIONS:
        return "text"
    return None


def _looks_like_path(s: str) -> bool:
    """A string meant as a file path rather than text: one line starting with / ./ ../ ~/, or one
    word with a path separator ending in a file extension. ("3.14", "Dr.Who", "and/or" are text.)"""
    if "\n" in s or len(s) > 4096:
        return False
    if s.startswith(("/", "./", "../", "~/")) or (os.sep != "/" and s.startswith(os.sep)):
        return True
    return not any(ch.isspace() for ch in s) and ("/" in s or os.sep in s) and re.search(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", s) is not None


def _one_item(x: Any, i: int) -> dict[str, Any]:
    """One item -> {modality: payload}; raises DataError (naming item ``i``) on what is not an item."""
    from PIL import Image

    if isinstance(x, dict):
        bad = [k for k in x if k not in MODALITIES]
        if bad:
            raise DataError(f"item {i}: unknown modality key(s) {bad}; expected any of {list(MODALITIES)}")
        out = {m: _payload(m, v, i) for m, v in x.items() if v is not None and not (isinstance(v, str) and not v.strip())}
        if not out:
            raise DataError(f"item {i}: the dict has no modality" + (f" (all of {list(x)} are empty)" if x else "")
                            + f"; give at least one of {list(MODALITIES)}")
        return out
    if isinstance(x, FileRef):
        m = _path_modality(x.suffix)
        if m is None:
            raise DataError(f"item {i}: {x}: unknown file extension {x.suffix!r} (expected an image {' '.join(IMAGE_EXTENSIONS)}, "
                            f"audio {' '.join(AUDIO_EXTENSIONS)} or .txt file)")
        return {m: x}
    if isinstance(x, (str, os.PathLike)):
        s = os.fspath(x)
        if isinstance(s, str):
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as e:
                raise DataError(f"item {i}: text is not valid Unicode ({e.reason} at position {e.start})") from None
        suffix = Path(s).suffix
        m = _path_modality(suffix) if suffix and len(suffix) <= 6 and "\n" not in s else None
        if m is not None:
            p = Path(s).expanduser()
            if p.is_dir():
                raise DataError(f"item {i}: {s}: is a directory, not a file")
            if not p.is_file():
                raise DataError(f"item {i}: {s}: file not found")
            if m == "text" and p.stat().st_size == 0:
                raise DataError(f"item {i}: {s}: empty text file")
            return {m: FileRef(p)}
        if "\n" not in s and len(s) < 4096 and Path(s).expanduser().is_dir():
            raise DataError(f"item {i}: {s}: is a directory, not a file")
        if isinstance(x, os.PathLike) or (len(s) < 4096 and "\n" not in s and Path(s).expanduser().is_file()):
            raise DataError(f"item {i}: {s}: unknown file extension {suffix!r} (expected an image {' '.join(IMAGE_EXTENSIONS)}, "
                            f"audio {' '.join(AUDIO_EXTENSIONS)} or .txt file); pass {{'text': ...}} for text")
        if not s.strip():
            raise DataError(f"item {i}: empty text")
        if _looks_like_path(s):
            raise DataError(f"item {i}: {s}: looks like a file path, but no such file"
                            + (f" (unknown extension {suffix!r})" if suffix else "") + "; pass {'text': ...} to use it as text")
        return {"text": s}
    if isinstance(x, Image.Image):
        return {"image": x}
    if isinstance(x, AudioClip):
        return {"audio": x}
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], (np.ndarray, list, torch.Tensor)):
        return {"audio": (np.asarray(x[0]), x[1])}
    if isinstance(x, np.ndarray):
        if x.ndim in (2, 3):
            return {"image": x}
        if x.ndim == 1:
            raise DataError(f"item {i}: a 1-d array is ambiguous; pass audio as (waveform, sample_rate_hz)")
        raise DataError(f"item {i}: array of shape {x.shape}: expected an image (H, W) or (H, W, 3)")
    raise DataError(
        f"item {i}: cannot use a {type(x).__name__} as an item; expected a dict of modalities, a file path, "
        "inline text, a PIL image, a pixel array or (waveform, sample_rate_hz)"
    )


def _payload(m: str, v: Any, i: int) -> Any:
    """The payload of modality ``m`` of item ``i`` given in a dict."""
    if m == "text" and isinstance(v, str):
        p = Path(v).expanduser()
        if v.lower().endswith(".txt") and "\n" not in v and " " not in v.strip():
            if not p.is_file():
                raise DataError(f"item {i}, text: {v}: looks like a .txt path but no such file; write inline text with spaces, or fix the path")
            if p.stat().st_size == 0:
                raise DataError(f"item {i}, text: {v}: empty text file")
            return FileRef(p)
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise DataError(f"item {i}, text: not valid Unicode ({e.reason} at position {e.start})") from None
        return v
    if isinstance(v, (str, os.PathLike, FileRef)):
        ref = v if isinstance(v, FileRef) else FileRef(Path(os.fspath(v)).expanduser())
        exts = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS, "text": TEXT_EXTENSIONS}[m]
        if ref.suffix not in exts:
            raise DataError(f"item {i}, {m}: {v}: unknown {m} file extension {ref.suffix!r} (expected {' '.join(exts)})")
        if ref.member is None and not Path(ref.path).is_file():
            raise DataError(f"item {i}, {m}: {v}: file not found")
        return ref
    got = _one_item(v, i)
    if m not in got:
        raise DataError(f"item {i}: the value given for {m!r} ({_describe(v)}) is {next(iter(got))} data")
    return got[m]


def as_items(items, labels=None, require_labels: bool = False) -> tuple[list[dict[str, Any]], list[str], np.ndarray | None]:
    """Normalise ``items`` (see the module notes) to ``(items, names, labels)``.

    Returns
    -------
    items : list of dict of modality -> payload
    names : list of str
        What to call each item in messages and outputs (its file, or ``item <i>``).
    labels : numpy.ndarray of shape (n,) or None
        ``labels`` as given, else the manifest's labels (class names), else None.

    Raises
    ------
    DataError
        Not items, or problems with them: every bad item is listed in one error.
    """
    table = None
    if isinstance(items, ItemTable):
        table = items
    elif isinstance(items, (str, os.PathLike)) and Path(os.fspath(items)).suffix.lower() in MANIFEST_EXTENSIONS:
        from .data.manifest import load_manifest

        table = load_manifest(items, require_labels=require_labels and labels is None)
    if table is not None:
        out, names = [], []
        for i in range(len(table)):
            item = {m: p[i] for m, p in table.modalities.items() if p[i] is not None}
            out.append(item)
            names.append(next((str(v) for v in item.values() if isinstance(v, FileRef)), table.ids[i]))
        if labels is None:
            lab = np.asarray(table.class_names, dtype=str)[table.labels]
            labels = None if (lab == "").any() else lab  # unlabelled rows (require_labels=False)
        return out, names, check_item_labels(labels, len(out))
    if isinstance(items, np.ndarray) and items.ndim == 2:
        raise DataError(f"items is one array of shape {items.shape}; wrap a single image in a list ([image])")
    if isinstance(items, (str, os.PathLike, dict)) or not hasattr(items, "__len__"):
        raise DataError(
            f"items must be a sequence of items or a manifest (.csv/.tsv/.jsonl path or ItemTable), got "
            f"{type(items).__name__}" + (f" {_describe(items)!r}" if isinstance(items, (str, os.PathLike)) else "")
            + "; wrap a single item in a list"
        )
    out, names, problems = [], [], []
    for i, x in enumerate(items):
        try:
            out.append(_one_item(x, i))
        except DataError as e:
            problems.append(str(e))
            out.append({})
        names.append(str(x) if isinstance(x, (str, os.PathLike, FileRef)) and len(str(x)) < 300 else f"item {i}")
    if problems:
        raise DataError(f"{len(problems)} bad item{'s' if len(problems) > 1 else ''}:\n" + "\n".join(f"  - {p}" for p in problems))
    if not out:
        raise DataError("no items given")
    return out, names, check_item_labels(labels, len(out))


# ------------------------------------------------------------------------------------------------
# the adapter
# ------------------------------------------------------------------------------------------------
def _with_params(build, name: str, params: dict, factory):
    """``build()``, with bad hyper-parameters reported by name (and the known ones listed)."""
    import inspect

    from .errors import UnknownNameError

    try:
        return build()
    except UnknownNameError:
        raise
    except (TypeError, ValueError) as e:
        try:
            sig = inspect.signature(factory).parameters.values()
            known = [] if any(p.kind == p.VAR_KEYWORD for p in sig) else \
                [p.name for p in sig if p.name not in ("self", "dims", "modalities", "text_dim")]
        except (TypeError, ValueError):
            known = []
        bad = [k for k in params if known and k not in known]
        if bad:
            raise ValueError(f"unknown parameter(s) {bad} for {name!r} (known: {', '.join(known)})") from None
        raise ValueError(f"bad parameters {params} for {name!r}: {e}") from None


def _encoder_spec(spec) -> tuple[str, dict]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        kw = {k: v for k, v in spec.items() if k != "name"}
        return spec["name"], kw
    raise ValueError(f"an encoder is given by its name or {{'name': ..., **options}}, got {spec!r}")


class Adapter(ClassifierMixin, BaseEstimator, _HubMixin):
    """A few-shot classifier on frozen encoders: fit on a few labelled items, save, load, predict.

    Parameters
    ----------
    encoders : dict of modality -> encoder name (or ``{"name": ..., **options}``), optional
        e.g. ``{"image": "efficientnet-lite2", "text": "minilm-l6"}`` (see
        :func:`fewmm.encoders.list_encoders`). Default: :data:`DEFAULT_ENCODERS` for the
        modalities the training items have.
    head : str or FusionHead, default "avg-proto"
        A fixed fusion head, a few-shot method (one-modality adapters), or a trained head (see the
        module notes).
    head_params : dict, optional
        Hyper-parameters of the head / method (e.g. ``{"C": 1.0}`` for ``linear-probe``).
    device : str, default "cpu"
        Where encoders and head run (``"cuda"`` when present).
    batch_size : int, default 32
        Encoder batch size.

    Attributes (after fit)
    ----------------------
    classes_ : numpy.ndarray of shape (n_classes,)
        Sorted distinct training labels (str or int); columns of ``predict_proba``.
    modalities_ : tuple of str
        Modalities of the adapter, in the order of the encoders.
    encoders_ : dict of modality -> fewmm.encoders.Encoder
    weight_names_ : tuple of str
        Columns of :meth:`explain`.
    n_support_ : int
        Number of training items.
    """

    def __init__(self, encoders: dict | None = None, head="avg-proto", head_params: dict | None = None,
                 device: str = "cpu", batch_size: int = 32):
        self.encoders = encoders
        self.head = head
        self.head_params = head_params
        self.device = device
        self.batch_size = batch_size

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.target_tags.required = False  # a manifest brings its own labels
        # X is a sequence of items (file paths, inline text, dicts of modalities, images, audio
        # tuples) or a manifest path; not a numeric 2-d array. ``transform`` gives MMFeatures,
        # not an array: the adapter is not a scikit-learn transformer (transformer_tags None).
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.input_tags.dict = True
        tags.input_tags.allow_nan = False
        tags.transformer_tags = None
        tags.classifier_tags.multi_label = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

    # -- building ------------------------------------------------------------------------------
    def _make_encoders(self, modalities) -> dict:
        import fewmm.encoders as E

        specs = dict(self.encoders) if self.encoders else {m: DEFAULT_ENCODERS[m] for m in MODALITIES if m in modalities}
        bad = [m for m in specs if m not in MODALITIES]
        if bad:
            raise ValueError(f"encoders: unknown modality {bad}; expected keys among {list(MODALITIES)}")
        out = {}
        for m in MODALITIES:
            if m not in specs:
                continue
            name, kw = _encoder_spec(specs[m])
            try:
                enc = E.create(name, device=self.device, **kw)
            except TypeError as e:
                raise ValueError(f"encoder {name!r} for {m}: bad options {kw}: {e}") from None
            if enc.modality != m:
                raise ValueError(f"encoders[{m!r}] = {name!r} is an encoder of {enc.modality!r}, not {m!r}")
            out[m] = enc
        return out

    def _embed(self, items: list[dict], names: list[str]):
        """Items -> MMFeatures (labels zero) with the fitted encoders. Raises DataError listing every
        unreadable item, or naming items with no modality the adapter has."""
        from .multimodal import MMFeatures

        mods = self.modalities_
        n = len(items)
        none = [names[i] for i, it in enumerate(items) if not any(m in it for m in mods)]
        if none:
            have = sorted({m for it in items for m in it} - set(mods))
            raise DataError(
                f"{len(none)} item(s) have none of the adapter's modalities {list(mods)}"
                + (f" (they have {have})" if have else "") + ": " + ", ".join(none[:10])
            )
        feats, mask, problems = {}, torch.zeros((n, len(mods)), dtype=torch.bool), []
        for j, m in enumerate(mods):
            enc = self.encoders_[m]
            rows = [i for i, it in enumerate(items) if m in it]
            f = torch.zeros((n, enc.dim), dtype=torch.float32)
            if rows:
                payloads = [items[i][m] for i in rows]
                try:
                    f[rows] = enc.embed(payloads, batch_size=self.batch_size)
                except DataError:
                    for i, p in zip(rows, payloads):  # find every bad item, not only the first
                        try:
                            enc._prepare(p)
                        except Exception as e:
                            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                            for prefix in (f"{p}: ", f"{enc.name}: "):
                                msg = msg[len(prefix):] if msg.startswith(prefix) else msg
                            problems.append(f"{names[i]} ({m}): {msg}")
                    if not problems:
                        raise
                    continue
                mask[rows, j] = True
            feats[m] = f
        if problems:
            raise DataError(f"{len(problems)} unreadable item{'s' if len(problems) > 1 else ''}:\n"
                            + "\n".join(f"  - {p}" for p in problems))
        return MMFeatures(feats, mask, mods, np.zeros(n, dtype=np.int64), [], info={"adapter": id(self)})

    def _build_head(self, dims: dict, modalities: tuple):
        import fewmm.heads as H
        import fewmm.methods as M
        from .heads.base import FusionHead

        params = dict(self.head_params or {})
        if isinstance(self.head, FusionHead):
            head = self.head
            if head.text_dim is not None:
                raise ValueError(f"head {head.name!r} uses class text, which adapters do not support")
            for m in head.modalities:
                if m not in dims or dims[m] != head.dims[m]:
                    raise FeatureError(f"head {head.name!r} was built for {m!r} features of dim {head.dims[m]}, "
                                       f"the adapter's encoders give {dims.get(m)}")
            return "head", head
        if not isinstance(self.head, str):
            raise TypeError(f"head must be a name or a fewmm.heads.FusionHead, got {type(self.head).__name__}")
        if self.head in _METHOD_HEADS or self.head in M.list_methods():
            if len(modalities) != 1:
                raise ValueError(f"method {self.head!r} works on one modality; this adapter has {list(modalities)}: "
                                 "use a fusion head (avg-proto, concat) or one encoder")
            return "method", _with_params(lambda: M.create(self.head, **params), self.head, params, M.METHODS.get(self.head))
        head = _with_params(lambda: H.create(self.head, dims, modalities, seed=0, **params), self.head, params,
                            H.HEADS.get(self.head.split(":")[0]))
        if head.trainable:
            raise ValueError(
                f"head {self.head!r} has parameters to meta-train on base classes; train it with "
                "fewmm.train.train_head and pass the trained head (head=<FusionHead>), or use a fixed head "
                "(avg-proto, concat, single:<modality>) or a method (protonet, linear-probe, ...)"
            )
        if head.text_dim is not None:
            raise ValueError(f"head {self.head!r} uses class text, which adapters do not support")
        return "head", head

    def _fit_features(self, support, y_enc: np.ndarray) -> None:
        from .heads.classifier import HeadClassifier

        kind, head = self._build_head(support.dims, support.modalities)
        self._kind = kind
        self._support = support
        self._y = y_enc
        if kind == "method":
            m = support.modalities[0]
            self._clf = head.fit(support.features[m], y_enc)
            self.weight_names_ = (m,)
        else:
            head = head.to("cpu").eval()
            self._clf = HeadClassifier(head).fit(support, y_enc)
            self.weight_names_ = tuple(head.weight_names)
        self.head_ = head
        self._fast = None  # the traced single-query scorer, built at the first single-item prediction

    # -- sklearn-style API ---------------------------------------------------------------------
    def fit(self, items, labels=None) -> "Adapter":
        """Embed the labelled items and fit the head on them.

        Parameters
        ----------
        items : items or a manifest (see the module notes)
        labels : array-like of shape (n,), str or int, optional
            Default: the manifest's ``label`` column.

        Returns
        -------
        self

        Raises
        ------
        DataError
            Bad or unreadable items (all listed), missing / malformed labels, fewer than 2 classes.
        UnknownNameError
            Unknown encoder or head name.
        """
        self._check_params()
        its, names, y = as_items(items, labels, require_labels=True)
        if y is None:
            raise DataError("fit needs labels: pass labels=[...] (one per item) or a manifest with a 'label' column")
        classes, y_enc = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise DataError(f"fit needs at least 2 classes, got {classes.tolist()}")
        present = {m for it in its for m in it}
        self.encoders_ = self._make_encoders(present)
        unused = [m for m in self.encoders_ if m not in present]
        if unused:
            raise DataError(f"encoders name {unused}, but no training item has {' or '.join(unused)}: the adapter could not "
                            "score items that have only that; drop those encoders or add such training items")
        self.modalities_ = tuple(self.encoders_)
        support = self._embed(its, names)
        self.classes_ = classes
        self.n_support_ = len(its)
        self._fit_features(support, y_enc.reshape(-1).astype(np.int64))
        return self

    def _check_params(self) -> None:
        """Validate the constructor arguments (at fit / load, as scikit-learn does)."""
        if self.encoders is not None and not isinstance(self.encoders, dict):
            raise ValueError(f"encoders must be a dict modality -> encoder name, e.g. {{'image': 'efficientnet-lite2'}}, got {self.encoders!r}")
        if self.head_params is not None and not isinstance(self.head_params, dict):
            raise ValueError(f"head_params must be a dict of hyper-parameters, got {self.head_params!r}")
        bs = self.batch_size
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise ValueError(f"batch_size must be a positive int, got {bs!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device {self.device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {e}") from None

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this Adapter is not fitted yet: call fit(items, labels) or Adapter.load(path)")

    def transform(self, items):
        """Encoder features of ``items``: a :class:`~fewmm.multimodal.MMFeatures` (``features[m]``
        (n, d_m) float32, zero rows where an item lacks m; ``mask`` (n, n_mod) bool)."""
        self._check_fitted()
        from .multimodal import MMFeatures

        if isinstance(items, MMFeatures):
            return items
        its, names, _ = as_items(items)
        return self._embed(its, names)

    def _single_query_scorer(self):
        """A ``torch.jit.trace`` of the head's scoring of ONE query against the fitted support set
        (support state and parameters frozen in), or None when it cannot be built.

        At batch size 1 the eager head spends most of its time in Python dispatch (about 100 small
        ops, slower still when the encoder just evicted the caches); the trace runs the same ops
        from C++ and halves the head time (``benchmarks/adapter_latency.py``). It is checked
        against the eager head for every pattern of present modalities before use; any
        difference beyond 1e-6 (or a tracing error) keeps the eager path.
        """
        if getattr(self, "_fast", None) is not None or self._kind != "head":
            return self._fast or None
        import copy
        import itertools
        import warnings

        from .multimodal import MMBatch, MMFeatures

        self._fast = False
        clf = self._clf
        head = copy.deepcopy(clf.head).requires_grad_(False).eval()
        mods = self.modalities_
        sup, smask, ct = clf._support, clf._support_mask, clf._class_text

        def batch(qf, qm):
            return MMBatch(sup, smask, {m: x.unsqueeze(0) for m, x in zip(mods, qf)}, qm.unsqueeze(0), ct,
                           torch.zeros((1, qm.shape[0]), dtype=torch.int64), mods)

        try:
            with torch.inference_mode():
                g = torch.Generator().manual_seed(0)
                qf = [torch.randn((1, sup[m].shape[-1]), generator=g) for m in mods]
                state = head.support_state(batch(qf, torch.ones((1, len(mods)), dtype=torch.bool)))

            def score(*args):
                b = batch(args[:-1], args[-1])
                lg, w = head._forward(b) if state is None else head.query_forward(state, b)
                return torch.softmax(lg[0].float(), dim=-1), w[0].float()

            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(score, tuple(qf) + (torch.ones((1, len(mods)), dtype=torch.bool),), check_trace=False)
            for pattern in itertools.product((False, True), repeat=len(mods)):
                if not any(pattern):
                    continue
                qm = torch.tensor([pattern])
                x = [f * float(p) for f, p in zip(qf, pattern)]
                want = clf.predict_with_weights(MMFeatures(dict(zip(mods, x)), qm, mods, np.zeros(1, np.int64), []))
                with torch.no_grad():
                    got = traced(*x, qm)
                if not (np.allclose(got[0].numpy(), want[0], rtol=0, atol=1e-6) and np.allclose(got[1].numpy(), want[1], rtol=0, atol=1e-6)):
                    return None
        except Exception:
            return None
        self._fast = traced
        return traced

    def _scores(self, items) -> tuple[np.ndarray, np.ndarray]:
        feats = self.transform(items)
        if len(feats) == 1 and self._kind == "head" and feats.info.get("adapter") == id(self):
            fast = self._single_query_scorer()
            if fast is not None:
                with torch.no_grad():
                    p, w = fast(*(feats.features[m] for m in self.modalities_), feats.mask)
                return p.numpy(), w.numpy()
        if self._kind == "method":
            m = self.modalities_[0]
            proba = self._clf.predict_proba(feats.features[m])
            return np.asarray(proba, dtype=np.float32), np.ones((len(feats), 1), dtype=np.float32)
        return self._clf.predict_with_weights(feats)

    def predict_proba(self, items) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), float32, columns as ``classes_``. ``items``
        may also be the :class:`~fewmm.multimodal.MMFeatures` returned by :meth:`transform`."""
        return self._scores(items)[0]

    def predict(self, items) -> np.ndarray:
        """Predicted labels, shape (n,), values from ``classes_``."""
        self._check_fitted()
        return self.classes_[self.predict_proba(items).argmax(1)]

    def explain(self, items) -> np.ndarray:
        """Weight given to each modality for each item: shape (n, len(weight_names_)), float32;
        rows sum to 1 over the modalities the item has, 0 for the others."""
        return self._scores(items)[1]

    def predict_with_weights(self, items) -> tuple[np.ndarray, np.ndarray]:
        """``(predict_proba(items), explain(items))`` from one pass."""
        return self._scores(items)

    def score(self, items, labels=None, sample_weight=None) -> float:
        """Accuracy on labelled items (scikit-learn's ``score``).

        Parameters
        ----------
        items : items or a manifest
        labels : array-like of shape (n,), optional
            Default: the manifest's labels.
        sample_weight : array-like of shape (n,), optional
            Weights of the items in the mean (default all 1).

        Returns
        -------
        float in [0, 1]: the (weighted) fraction of items predicted correctly.

        Raises
        ------
        DataError
            No labels, or labels that are not classes of the adapter.
        """
        self._check_fitted()
        its, names, y = as_items(items, labels, require_labels=True)
        if y is None:
            raise DataError("score needs labels")
        check_query_classes(y, self.classes_, "score: labels", DataError)
        correct = self.predict(self._embed(its, names)) == y
        if sample_weight is None:
            return float(correct.mean())
        return float(np.average(correct, weights=np.asarray(sample_weight, dtype=np.float64)))

    def __repr__(self) -> str:
        head = self.head if isinstance(self.head, str) else f"<{type(self.head).__name__} {getattr(self.head, 'name', '')}>"
        fitted = f", classes={len(self.classes_)}, modalities={list(self.modalities_)}" if hasattr(self, "classes_") else ""
        return f"Adapter(encoders={self.encoders!r}, head={head!r}{fitted})"

    # -- save / load ---------------------------------------------------------------------------
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
                m: {"name": e.name, "options": _encoder_spec((self.encoders or {}).get(m, e.name))[1], "weights_id": e.weights_id,
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
        from .multimodal import MMFeatures

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
