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

# Split by concern (items, the estimator, saving / loading); every public name stays importable
# from fewmm.adapter.
from .estimator import Adapter
from .format import CONFIG_NAME, DEFAULT_ENCODERS, FORMAT, FORMAT_VERSION, TENSORS_NAME, AdapterError
from .items import MANIFEST_EXTENSIONS, TEXT_EXTENSIONS, as_items

__all__ = ["Adapter", "AdapterError", "as_items", "FORMAT", "FORMAT_VERSION", "CONFIG_NAME", "TENSORS_NAME",
           "DEFAULT_ENCODERS", "MANIFEST_EXTENSIONS", "TEXT_EXTENSIONS"]
