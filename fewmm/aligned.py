"""Aligned pairs: an item encoder and a text encoder whose features share one space.

The transfer methods of :mod:`fewmm.methods` (zero-shot, Tip-Adapter, LP++, ...) compare item
features with class-text features, so both must live in one space. An :class:`AlignedPair`
maps cached item features (n, d_item) and class-text features (C, d_text) into that space
(unit rows, width ``dim``). Two kinds:

``joint``
    The two towers of one contrastive model: CLIP image/text (``hf-clip-image`` +
    ``hf-clip-text``, ``openclip-image`` + ``openclip-text``) or CLAP audio/text
    (``hf-clap-audio`` + ``hf-clap-text``), loaded from the same weights. Both maps are the
    identity (plus L2 normalisation): :func:`joint_pair`.
``bridge``
    Any item encoder with any text encoder (e.g. BirdNET audio -> MiniLM text, EfficientNet
    image -> MiniLM text): a projection of the item features into the (frozen) text space,
    trained contrastively on (item, class text) pairs of BASE classes only, in the spirit of
    DeViSE (Frome et al., NeurIPS 2013) with CLIP's softmax (InfoNCE) loss over the base-class
    texts: :func:`train_bridge`. Novel classes are never seen in training; their text goes
    through the same (identity) text map, so zero-shot on them is possible.

The bridge is trained through the kit's episodic engine (:func:`fewmm.engine.fit`): each step is
one task over EVERY base class (a few items of each), and :class:`BridgeLearner` 's logits are the
cosine similarities of the projected items to the class texts of the task's classes divided by
the temperature, so the engine's plain episode cross-entropy (the ``protonet`` trainer, which
scores the learner's own logits) is the InfoNCE loss over the base-class texts. Deterministic:
same seed, same data -> the same weights (CPU).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .engine import FitConfig, create_trainer, fit
from .errors import FewmmError
from .util import l2_normalize

#: Encoder name prefixes whose item and text towers come from one joint model.
JOINT_FAMILIES = {"hf-clip": ("image", "text"), "openclip": ("image", "text"), "hf-clap": ("audio", "text")}


class AlignmentError(FewmmError, ValueError):
    """Two encoders cannot form an aligned pair, or a bridge cannot be trained as asked."""


def _as_matrix(x, name: str, dim: int | None = None) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2 or t.shape[0] == 0:
        raise AlignmentError(f"{name} must have shape (n, d) with n >= 1, got {tuple(t.shape)}")
    if dim is not None and t.shape[1] != dim:
        raise AlignmentError(f"{name} has dim {t.shape[1]}, expected {dim}")
    t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise AlignmentError(f"{name} contains NaN or inf")
    return t


@dataclass
class AlignedPair:
    """Maps item and class-text features into one space.

    Attributes
    ----------
    kind : {"joint", "bridge"}
    item_dim, text_dim, dim : int
        Input widths and the joint width.
    item_map : torch.nn.Module or None
        (n, item_dim) unit features -> (n, dim); None: identity (joint models).
    info : dict
        JSON-able: encoders, and for a bridge its config, base classes and training record.
    """

    kind: str
    item_dim: int
    text_dim: int
    dim: int
    item_map: nn.Module | None = None
    info: dict = field(default_factory=dict)

    def items(self, features) -> torch.Tensor:
        """Item features (n, item_dim) -> joint features (n, dim), float32, unit rows.

        Raises
        ------
        AlignmentError
            Wrong width, NaN/inf.
        """
        x = l2_normalize(_as_matrix(features, "item features", self.item_dim))
        if self.item_map is not None:
            with torch.no_grad():
                x = self.item_map(x)
        return l2_normalize(x)

    def texts(self, features) -> torch.Tensor:
        """Class-text features (C, text_dim) -> (C, dim), float32, unit rows (the text side is
        never transformed: the identity for joint models, the frozen target space of a bridge)."""
        return l2_normalize(_as_matrix(features, "class-text features", self.text_dim))

    def class_text(self, features, classes=None) -> dict:
        """``{class: (dim,) tensor}`` for :mod:`fewmm.methods` 's ``class_text`` argument.

        Parameters
        ----------
        features : array-like of shape (C, text_dim)
            Row c is class c's text embedding.
        classes : sequence of labels, length C, optional (default 0..C-1)
        """
        t = self.texts(features)
        keys = range(t.shape[0]) if classes is None else list(classes)
        if len(keys) != t.shape[0]:
            raise AlignmentError(f"{len(keys)} class labels for {t.shape[0]} class-text rows")
        return {(k.item() if isinstance(k, np.generic) else k): t[i] for i, k in enumerate(keys)}


def _family(name: str) -> str | None:
    return next((f for f in JOINT_FAMILIES if str(name).startswith(f + "-")), None)


def joint_pair(item_encoder, text_encoder) -> AlignedPair:
    """The aligned pair of a joint model's two towers (CLIP image/text or CLAP audio/text).

    Parameters
    ----------
    item_encoder, text_encoder : fewmm.encoders.Encoder
        E.g. ``create("hf-clip-image", model=folder)`` and ``create("hf-clip-text", model=folder)``.

    Returns
    -------
    AlignedPair of kind ``"joint"`` (identity maps).

    Raises
    ------
    AlignmentError
        The encoders are not the two towers of one model family, have other modalities, come
        from different weights (``weights_id`` differ) or have different widths.
    """
    fi, ft = _family(item_encoder.name), _family(text_encoder.name)
    if fi is None or fi != ft:
        raise AlignmentError(f"{item_encoder.name!r} and {text_encoder.name!r} are not the two towers of one joint "
                             f"model ({', '.join(f + '-*' for f in JOINT_FAMILIES)}); for other encoders train a "
                             "bridge on base classes (fewmm.aligned.train_bridge)")
    want = JOINT_FAMILIES[fi]
    if (item_encoder.modality, text_encoder.modality) != want:
        raise AlignmentError(f"{fi}: expected a {want[0]} encoder and a {want[1]} encoder, got "
                             f"{item_encoder.modality!r} ({item_encoder.name}) and {text_encoder.modality!r} ({text_encoder.name})")
    if item_encoder.weights_id != text_encoder.weights_id:
        raise AlignmentError(f"{item_encoder.name} and {text_encoder.name} load different weights "
                             f"({item_encoder.weights_id[:12]} vs {text_encoder.weights_id[:12]}): their spaces are not aligned")
    if item_encoder.dim != text_encoder.dim:
        raise AlignmentError(f"{item_encoder.name} has dim {item_encoder.dim} but {text_encoder.name} has {text_encoder.dim}")
    rec = {"item_encoder": {**item_encoder.cache_key, "dim": int(item_encoder.dim)},
           "text_encoder": {**text_encoder.cache_key, "dim": int(text_encoder.dim)}}
    return AlignedPair("joint", int(item_encoder.dim), int(text_encoder.dim), int(text_encoder.dim), None, rec)


@dataclass
class BridgeConfig:
    """Training settings of a bridge (nothing is chosen on novel classes).

    The defaults (a 2-layer MLP of width 512, temperature 0.07, 300 steps) were chosen among 9
    candidates on the VALIDATION classes of esc50-text (BirdNET -> MiniLM), by zero-shot +
    cross-modal linear probe 5-way 1-shot accuracy: ``benchmarks/transfer_bridge_selection.py``,
    results in ``results/transfer-bridge-selection.json``. They are used unchanged for every
    other task and encoder pair. (That selection trained with the bridge's former plain
    mini-batch loop; the engine path that replaced it is compared with it on the same validation
    classes by ``benchmarks/bridge_engine.py``, ``results/bridge-engine.json``.)

    Parameters
    ----------
    hidden : int, default 512
        0: a linear map (with bias) item_dim -> text_dim; > 0: a 2-layer MLP (Linear, ReLU,
        Linear) with this hidden width.
    temperature : float, default 0.07
        Softmax temperature of the InfoNCE logits (CLIP's initial temperature).
    steps : int, default 300
        AdamW steps (one task each).
    batch_size : int, default 128
        About this many items per step: each task holds every base class with
        ``max(2, round(batch_size / n_base_classes))`` items of each (1 "support" + the rest
        "queries"; all of them are scored; fewer for a class with fewer items).
    lr : float, default 1e-3
    weight_decay : float, default 1e-4
    seed : int, default 0
        Initial weights and mini-batch order.
    """

    hidden: int = 512
    temperature: float = 0.07
    steps: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self):
        for k in ("steps", "batch_size"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise AlignmentError(f"BridgeConfig.{k} must be an integer >= 1, got {v!r}")
        for k in ("temperature", "lr"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise AlignmentError(f"BridgeConfig.{k} must be a finite number > 0, got {v!r}")
        if not (isinstance(self.hidden, (int, np.integer)) and self.hidden >= 0):
            raise AlignmentError(f"BridgeConfig.hidden must be an integer >= 0, got {self.hidden!r}")


class BridgeLearner:
    """The bridge as an engine :class:`~fewmm.engine.learner.Learner`: a projection ``g`` of unit
    item features, scored against the frozen class texts of each task's classes.

    Logits of an item x for the N classes c of its task (support and query items alike)::

        normalise(g(x)) . t_c / temperature

    Parameters
    ----------
    model : torch.nn.Module
        ``g``: (B, item_dim) -> (B, text_dim).
    features : torch.Tensor of shape (n, item_dim)
        Unit item features (the training items: base classes only).
    labels : numpy.ndarray of shape (n,), int
        Global class of each item (rows of ``text``).
    text : torch.Tensor of shape (C, text_dim)
        Unit class-text features; only the rows of the tasks' classes are read.
    temperature : float
    """

    kind = "bridge"
    name = "bridge"

    def __init__(self, model: nn.Module, features: torch.Tensor, labels, text: torch.Tensor, temperature: float):
        self.model, self.features, self.labels = model, features, np.asarray(labels)
        self.text, self.temperature = text, float(temperature)

    def batch(self, episodes, step: int | None = None):
        """``(items (E, N*(K+Q), item_dim), classes (E, N), targets (E, N*(K+Q)))``, class-major."""
        e, n, k = episodes.support.shape
        idx = np.concatenate([episodes.support, episodes.query], axis=2).reshape(e, -1)  # (E, N*(K+Q)), class-major
        y = torch.arange(n).repeat_interleave(idx.shape[1] // n).expand(e, -1)
        return self.features[torch.as_tensor(idx)], torch.as_tensor(episodes.classes), y

    def logits(self, batch) -> torch.Tensor:
        x, classes, _ = batch
        z = l2_normalize(self.model(x))
        return z @ self.text[classes].transpose(1, 2) / self.temperature

    def targets(self, batch) -> torch.Tensor:
        return batch[2]

    def evaluate(self, episodes) -> np.ndarray:
        """Per-episode zero-shot accuracy (fraction) of the query items against the class texts of
        the episode's classes (no support item is read)."""
        e, n, q = episodes.query.shape
        with torch.no_grad():
            x = self.features[torch.as_tensor(episodes.query.reshape(e, -1))]
            pred = self.logits((x, torch.as_tensor(episodes.classes), None)).argmax(-1)
        return (pred == torch.arange(n).repeat_interleave(q)).double().mean(1).numpy()

    def describe(self) -> dict:
        return {"kind": self.kind, "module": type(self.model).__name__, "temperature": self.temperature,
                "parameters": {n: list(p.shape) for n, p in self.model.named_parameters()}}


def train_bridge(item_features, labels, class_text, base_classes, config: BridgeConfig | None = None,
                 item_encoder: dict | None = None, text_encoder: dict | None = None) -> AlignedPair:
    """Learn a projection of item features into a text space on BASE classes (DeViSE-style).

    Loss (per item i of class y_i, over the base classes B)::

        z_i    = normalise(g(normalise(x_i)))          g: linear (or MLP) item_dim -> text_dim
        loss_i = -log softmax_{c in B}( z_i . t_c / temperature )[y_i]

    with ``t_c`` the unit class-text features (frozen).

    Parameters
    ----------
    item_features : array-like of shape (n, item_dim)
        The whole table may be passed: only items of ``base_classes`` are used.
    labels : array-like of shape (n,), int
        Global class of each item (row of ``class_text``).
    class_text : array-like of shape (C, text_dim)
    base_classes : sequence of int
        The classes to train on (at least 2); no other class's items or text are touched.
    config : BridgeConfig, optional
    item_encoder, text_encoder : dict, optional
        Encoder records for the pair's ``info``.

    Returns
    -------
    AlignedPair of kind ``"bridge"``; ``info["training"]`` has the loss at the start and end,
    the base-class training accuracy, seconds, and the number of items used.

    Raises
    ------
    AlignmentError
        Shape mismatches, fewer than 2 base classes, base classes without items or out of range.
    """
    cfg = config or BridgeConfig()
    x = _as_matrix(item_features, "item features")
    t = l2_normalize(_as_matrix(class_text, "class-text features"))
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise AlignmentError(f"{y.shape[0]} labels for {x.shape[0]} item rows")
    base = np.unique(np.asarray(base_classes, dtype=np.int64))
    if base.size < 2:
        raise AlignmentError(f"a bridge needs at least 2 base classes, got {base.tolist()}")
    if base.min() < 0 or base.max() >= t.shape[0]:
        raise AlignmentError(f"base classes must lie in [0, {t.shape[0]}) (rows of class_text), got {base.tolist()}")
    keep = np.isin(y, base)
    missing = np.setdiff1d(base, y[keep])
    if missing.size:
        raise AlignmentError(f"base classes without items: {missing.tolist()}")
    xb = l2_normalize(x[torch.as_tensor(np.flatnonzero(keep))])
    yb = torch.as_tensor(np.searchsorted(base, y[keep]), dtype=torch.int64)
    tb = t[torch.as_tensor(base)]
    d_in, d_out = x.shape[1], t.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        g = nn.Linear(d_in, d_out) if cfg.hidden == 0 else nn.Sequential(nn.Linear(d_in, cfg.hidden), nn.ReLU(),
                                                                         nn.Linear(cfg.hidden, d_out))

    def full_loss() -> tuple[float, float]:
        with torch.no_grad():
            logits = l2_normalize(g(xb)) @ tb.T / cfg.temperature
            return float(nn.functional.cross_entropy(logits, yb)), float((logits.argmax(1) == yb).float().mean())

    counts = np.bincount(y[keep], minlength=t.shape[0])[base]
    if counts.min() < 2:
        raise AlignmentError(f"base classes {base[counts < 2].tolist()} have a single item; a bridge trained through the "
                             "episodic engine needs at least 2 items per base class")
    per_class = max(2, int(round(int(cfg.batch_size) / base.size)))
    fit_cfg = FitConfig(n_way=int(base.size), n_shot=1, n_query=per_class - 1, episodes_per_step=1, steps=int(cfg.steps),
                        lr=float(cfg.lr), weight_decay=float(cfg.weight_decay), optimizer="adamw", grad_clip=None,
                        lr_schedule="constant", eval_every=int(cfg.steps), validation="none", seed=int(cfg.seed),
                        progress=False)
    learner = BridgeLearner(g, xb, y[keep], t, cfg.temperature)
    t0 = time.time()
    loss0, _ = full_loss()
    n = xb.shape[0]
    np_state = np.random.get_state()
    try:  # the engine seeds the global generators: leave the caller's untouched
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            res = fit(learner, create_trainer("protonet"), base, None, fit_cfg)
    finally:
        np.random.set_state(np_state)
    g.eval().requires_grad_(False)
    loss1, acc1 = full_loss()
    info = {
        "item_encoder": item_encoder, "text_encoder": text_encoder,
        "method": "bridge: item features -> frozen text space, InfoNCE over base-class texts (DeViSE-style); "
                  "trained through fewmm.engine.fit (protonet trainer on BridgeLearner logits: every base class in "
                  f"each task, {per_class} items per class, AdamW, no validation)",
        "engine": {"fit_config": fit_cfg.to_dict(), "steps": res.steps, "items_used": int(res.train_items.size)},
        "config": asdict(cfg), "base_classes": base.tolist(),
        "training": {"n_items": int(n), "loss_start": round(loss0, 4), "loss_end": round(loss1, 4),
                     "train_accuracy": round(acc1, 4), "seconds": round(time.time() - t0, 2)},
    }
    return AlignedPair("bridge", int(d_in), int(d_out), int(d_out), g, info)


__all__ = ["AlignedPair", "AlignmentError", "BridgeConfig", "BridgeLearner", "JOINT_FAMILIES", "joint_pair", "train_bridge"]
