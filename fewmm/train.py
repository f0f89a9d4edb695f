"""Episodic (ProtoNet-style) meta-training of fusion heads on frozen features.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017: each step
samples N-way K-shot Q-query episodes from the BASE classes only, the head scores the queries
against its prototypes, and the loss is the cross-entropy of the query logits (Adam). Every
``eval_every`` steps the head is evaluated on episodes of the VALIDATION classes (never the novel
ones); the best head on validation is kept (and, with ``patience``, training stops early)::

    from fewmm.train import TrainConfig, train_head
    head = fewmm.heads.create("gmu", features)
    result = train_head(head, features, base_classes, val_classes, TrainConfig(steps=2000),
                        checkpoint_dir="runs/gmu")          # head now holds the best weights
    acc = fewmm.heads.evaluate_head(head, features, novel_episodes)

Determinism: the episodes, augmentation and dropout of step ``t`` depend only on
``(config.seed, t)``, so a run resumed from a checkpoint continues exactly as an uninterrupted
run (bit-identical parameters on CPU).

Checkpoints (``checkpoint_dir``): ``last.safetensors`` (head state under ``head.*``, Adam state
under ``optim.*``) + ``last.json`` (step, RNG states, best validation accuracy, head name,
hyper-parameters, feature dims, encoder weights ids, training config, history), and
``best.safetensors`` + ``best.json`` (the best head on validation; load it with
:func:`load_head`).

Encoder weights ids are read from ``MMFeatures.info["encoders"]``: a mapping modality ->
``Encoder.cache_key`` (``{"encoder", "weights_id", "preprocess"}``) or modality -> id string, plus
``"class_text"`` for the class-text encoder; see :func:`encoder_ids`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .episodes import Episodes, sample_episodes
from .errors import EpisodeError, FeatureError
from .heads import create as create_head
from .heads.base import UNAVAILABLE_LOGIT, FusionHead
from .heads.classifier import align_features, check_items_have_modality, evaluate_head, features_to
from .multimodal import MMBatch, MMFeatures

FORMAT = "fewmm-head-checkpoint/1"

__all__ = [
    "TrainConfig", "TrainResult", "train_head", "training_episodes", "validation_episodes", "episode_loss", "save_head",
    "load_head", "check_head_checkpoint", "encoder_ids", "CheckpointError", "evaluate_head",
]


class CheckpointError(FeatureError):
    """A checkpoint does not match the head, the features or the training configuration
    (a :class:`~fewmm.errors.FeatureError`, hence a ``ValueError``)."""


@dataclass
class TrainConfig:
    """Episodic training hyper-parameters.

    Attributes
    ----------
    n_way, n_query : int
        N classes and Q queries per class of each training episode.
    n_shot : int or tuple of int
        K shots; a tuple draws K uniformly from it at each step (e.g. ``(1, 5)``: one head for
        both settings, and lets AM3 learn shot-dependent mixing).
    episodes_per_step : int
        Episodes averaged in one Adam step (meta-batch).
    steps : int
        Total optimisation steps (a resumed run continues up to this number).
    lr, weight_decay : float
        Adam.
    scale_lr_mult : float
        Learning-rate multiplier of the heads' temperature / scale scalars (see
        :meth:`fewmm.heads.base.FusionHead.param_groups`): they live in log space and need to
        move by several units.
    grad_clip : float or None
        Max global gradient norm.
    eval_every : int
        Validate (and checkpoint) every this many steps, and at the last step.
    val_episodes : int
        Validation episodes (sampled once from the seed, on validation classes).
    val_way, val_shot, val_query : int or None
        Validation episode shape; default ``n_way``, the smallest ``n_shot``, ``n_query``.
    patience : int or None
        Stop after this many validations without improvement (None: never stop early).
    modality_dropout : float
        Training augmentation: this fraction of support and query items (with >= 2 modalities)
        lose one random modality (mask set False), so heads learn to handle missing modalities.
    corrupt_fraction : float
        With ``train_head(..., corrupted=...)``: for each item and modality, the probability of
        taking that modality's features from the corrupted table (gates learn to distrust it).
    seed : int
    device : str
        ``"cpu"``, ``"cuda"``, ...
    progress : bool
        progress bar (loss, validation accuracy; plain periodic lines when not on a terminal).
    """

    n_way: int = 5
    n_shot: int | tuple = 1
    n_query: int = 15
    episodes_per_step: int = 8
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.0
    scale_lr_mult: float = 10.0
    grad_clip: float | None = 10.0
    eval_every: int = 100
    val_episodes: int = 300
    val_way: int | None = None
    val_shot: int | None = None
    val_query: int | None = None
    patience: int | None = None
    modality_dropout: float = 0.0
    corrupt_fraction: float = 0.0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.n_shot, (list, tuple)):
            self.n_shot = tuple(int(k) for k in self.n_shot)
            if not self.n_shot or min(self.n_shot) < 1:
                raise ValueError(f"n_shot must be >= 1, got {self.n_shot}")
        for name in ("n_way", "n_query", "episodes_per_step", "steps", "eval_every", "val_episodes"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < (0 if name == "steps" else 1):
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        for name in ("modality_dropout", "corrupt_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1], got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")

    @property
    def shots(self) -> tuple[int, ...]:
        return self.n_shot if isinstance(self.n_shot, tuple) else (int(self.n_shot),)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["n_shot"] = list(self.n_shot) if isinstance(self.n_shot, tuple) else self.n_shot
        return d


#: Config fields that may differ when resuming (they do not change the training trajectory).
RESUMABLE_CHANGES = ("steps", "progress", "device")


@dataclass
class TrainResult:
    """What :func:`train_head` returns.

    Attributes
    ----------
    head : FusionHead
        The trained head, holding the best weights on validation (``restore_best=True``).
    best_val_acc : float
        Mean validation accuracy (fraction) of the best head; NaN if never validated.
    best_step : int
    steps : int
        Steps done in total (including before a resume).
    stopped_early : bool
    history : list of dict
        One entry per validation: ``{"step", "loss", "train_acc", "val_acc", "seconds"}``.
    final_state : dict of str to torch.Tensor
        The head's state at the last step (before restoring the best).
    train_items : numpy.ndarray of int64
        Sorted indices of every item used in a training episode in this call (audit: base
        classes only).
    val_items : numpy.ndarray of int64
        Sorted indices of the validation episodes' items.
    """

    head: FusionHead
    best_val_acc: float
    best_step: int
    steps: int
    stopped_early: bool
    history: list = field(default_factory=list)
    final_state: dict = field(default_factory=dict)
    train_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    val_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# ------------------------------------------------------------------------------------------------
# episodes and augmentation, from (seed, step) alone
# ------------------------------------------------------------------------------------------------
def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint32)[0])


def class_items(labels: np.ndarray, classes) -> np.ndarray:
    """Indices of the items whose label is in ``classes`` (sorted), int64."""
    return np.flatnonzero(np.isin(labels, np.asarray(list(classes), dtype=labels.dtype))).astype(np.int64)


def _remap(ep: Episodes, items: np.ndarray) -> Episodes:
    return Episodes(ep.classes, items[ep.support], items[ep.query], ep.seed)


def training_episodes(labels, base_classes, config: TrainConfig, step: int) -> Episodes:
    """The training episodes of ``step`` (a function of ``config.seed`` and ``step`` only).

    Sampled with :func:`fewmm.episodes.sample_episodes` on the items of ``base_classes`` only;
    indices are into the full table.

    Returns
    -------
    Episodes of shape (episodes_per_step, n_way, K) / (..., n_query), K drawn from ``config.shots``.
    """
    labels = np.asarray(labels)
    items = class_items(labels, base_classes)
    rng = np.random.default_rng(_seed(config.seed, step, 0))
    k = int(config.shots[int(rng.integers(len(config.shots)))])
    ep = sample_episodes(labels[items], config.n_way, k, config.n_query, config.episodes_per_step,
                         seed=int(rng.integers(2**31 - 1)), allow_fewer_queries=True)
    return _remap(ep, items)


def validation_episodes(labels, val_classes, config: TrainConfig) -> Episodes:
    """The fixed validation episodes (from ``config.seed``), on ``val_classes`` only."""
    labels = np.asarray(labels)
    items = class_items(labels, val_classes)
    ep = sample_episodes(
        labels[items], config.val_way or config.n_way, config.val_shot or min(config.shots), config.val_query or config.n_query,
        config.val_episodes, seed=_seed(config.seed, 1_000_003), allow_fewer_queries=True,
    )
    return _remap(ep, items)


def _drop_modalities(mask: torch.Tensor, frac: float, gen: torch.Generator) -> torch.Tensor:
    """Each item with >= 2 modalities loses one random present modality with probability frac."""
    shape = mask.shape
    m = mask.reshape(-1, shape[-1]).cpu()
    hit = (torch.rand(m.shape[0], generator=gen) < frac) & (m.sum(1) >= 2)
    keys = torch.rand(m.shape, generator=gen).masked_fill(~m, -1.0)
    which = keys.argmax(1)
    out = m.clone()
    rows = torch.nonzero(hit).flatten()
    out[rows, which[rows]] = False
    return out.reshape(shape).to(mask.device)


def _augment(batch: MMBatch, cbatch: MMBatch | None, config: TrainConfig, step: int) -> MMBatch:
    gen = torch.Generator().manual_seed(_seed(config.seed, step, 2))
    sup, qry = dict(batch.support), dict(batch.query)
    sm, qm = batch.support_mask, batch.query_mask
    if cbatch is not None and config.corrupt_fraction > 0:
        for j, m in enumerate(batch.modalities):
            if m not in cbatch.support:
                continue
            for feats, cfeats, mask, cmask in ((sup, cbatch.support, sm, cbatch.support_mask), (qry, cbatch.query, qm, cbatch.query_mask)):
                cj = cbatch.modalities.index(m)
                take = (torch.rand(mask.shape[:-1], generator=gen) < config.corrupt_fraction).to(mask.device)
                take = take & mask[..., j] & cmask[..., cj]
                feats[m] = torch.where(take.unsqueeze(-1), cfeats[m], feats[m])
    if config.modality_dropout > 0:
        sm = _drop_modalities(sm, config.modality_dropout, gen)
        qm = _drop_modalities(qm, config.modality_dropout, gen)
        sup = {m: sup[m] * sm[..., j : j + 1].to(sup[m].dtype) for j, m in enumerate(batch.modalities)}
        qry = {m: qry[m] * qm[..., j : j + 1].to(qry[m].dtype) for j, m in enumerate(batch.modalities)}
    return MMBatch(sup, sm, qry, qm, batch.class_text, batch.query_labels, batch.modalities)


def episode_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of query logits, ignoring queries whose true class cannot be scored.

    Parameters
    ----------
    logits : torch.Tensor of shape (E, M, N)
    labels : torch.Tensor of shape (E, M), int64

    Returns
    -------
    (loss, accuracy) : 0-d tensors (accuracy over all queries, detached)
    """
    lg = logits.reshape(-1, logits.shape[-1])
    y = labels.reshape(-1)
    ok = lg.gather(1, y[:, None])[:, 0] > UNAVAILABLE_LOGIT / 2
    loss = torch.nn.functional.cross_entropy(lg[ok], y[ok]) if ok.any() else lg.sum() * 0.0
    acc = (lg.argmax(1) == y).float().mean().detach()
    return loss, acc


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
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


def _check_encoders(saved: dict, features: MMFeatures, used, where: str) -> None:
    now = encoder_ids(features.info)
    for m in used:
        a, b = saved.get(m), now.get(m)
        if a is not None and b is not None and a != b:
            raise CheckpointError(
                f"{where} was trained on modality {m!r} features from encoder weights {a!r}, but these features come from {b!r}"
            )
        if a is not None and b is None:
            warnings.warn(f"{where}: features carry no encoder weights id for {m!r} (checkpoint: {a!r}); cannot verify", stacklevel=3)


def _head_meta(head: FusionHead, features: MMFeatures) -> dict:
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
        _check_encoders(meta.get("encoders", {}), features, list(meta.get("dims", {})), where)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _state(head: FusionHead) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in head.state_dict().items()}


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
    meta = head.config() if features is None else _head_meta(head, features)
    meta = {"format": FORMAT, **meta, **(extra or {})}
    _atomic_write(p.with_suffix(".safetensors"), lambda t: save_file(_state(head), str(t)))
    _atomic_write(p.with_suffix(".json"), lambda t: t.write_text(json.dumps(meta, indent=1, sort_keys=True)))
    return p.with_suffix(".safetensors")


def _meta_path(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        p = p / "best"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def load_head(path, features: MMFeatures | None = None, head: FusionHead | None = None, device=None) -> FusionHead:
    """Load a head saved by :func:`save_head` or :func:`train_head`.

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
        head_meta = meta.get("head", meta)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise CheckpointError(f"{js}: not a readable head checkpoint description (truncated or edited?): {e}") from None
    check_head_checkpoint(head_meta, head, features, where=f"checkpoint {js}")
    if head is None:
        try:
            head = create_head(head_meta["name"], head_meta["dims"], head_meta["modalities"], **head_meta.get("hparams", {}))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{js}: incomplete head description ({type(e).__name__}: {e})") from None
    try:
        state = load_file(str(st))
    except Exception as e:  # safetensors raises SafetensorError on truncated / garbled files
        raise CheckpointError(f"{st}: not a readable safetensors file (truncated or damaged?): {e}") from None
    state = {k[5:]: v for k, v in state.items() if k.startswith("head.")} or state
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{st}: the tensors do not fit head {head.name!r}: {str(e).splitlines()[0]}") from None
    if device is not None:
        head.to(device)
    return head


def _optim_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, other = {}, {"param_groups": sd["param_groups"], "state": {}}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{i}.{k}"] = v.detach().cpu().clone().contiguous()
            else:
                other["state"].setdefault(str(i), {})[k] = v
    return tensors, other


def _load_optim(opt: torch.optim.Optimizer, tensors: dict, other: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    for i, st in other.get("state", {}).items():
        state.setdefault(int(i), {}).update(st)
    groups = other["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def _rng_dump() -> dict:
    return {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "numpy": json.loads(json.dumps(np.random.get_state()[1].tolist())),
        "numpy_pos": int(np.random.get_state()[2]),
    }


def _rng_load(d: dict) -> None:
    if "torch" in d:
        torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(d["torch"])), dtype=torch.uint8))
    if "numpy" in d:
        np.random.set_state(("MT19937", np.asarray(d["numpy"], dtype=np.uint32), int(d.get("numpy_pos", 624)), 0, 0.0))


# ------------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------------
def _check_corrupted(features: MMFeatures, corrupted: MMFeatures) -> None:
    if not isinstance(corrupted, MMFeatures):
        raise FeatureError(f"corrupted must be an MMFeatures, got {type(corrupted).__name__}")
    if len(corrupted) != len(features) or not np.array_equal(corrupted.labels, features.labels):
        raise FeatureError(f"corrupted features must hold the same items with the same labels ({len(corrupted)} vs {len(features)} items)")
    for m in corrupted.modalities:
        if m in features.modalities and corrupted.features[m].shape[1] != features.features[m].shape[1]:
            raise FeatureError(f"corrupted modality {m!r} has dim {corrupted.features[m].shape[1]}, clean has {features.features[m].shape[1]}")
    if not set(corrupted.modalities) & set(features.modalities):
        raise FeatureError(f"corrupted features share no modality with the features ({list(corrupted.modalities)})")


def _check_classes(labels: np.ndarray, base_classes, val_classes) -> tuple[np.ndarray, np.ndarray]:
    base = np.unique(np.asarray(list(base_classes), dtype=np.int64))
    val = np.unique(np.asarray(list(val_classes), dtype=np.int64))
    if base.size == 0 or val.size == 0:
        raise EpisodeError("base_classes and val_classes must both be non-empty")
    both = np.intersect1d(base, val)
    if both.size:
        raise EpisodeError(f"classes {both[:10].tolist()} are both base and validation classes")
    present = np.unique(labels)
    for name, cl in (("base", base), ("validation", val)):
        miss = np.setdiff1d(cl, present)
        if miss.size:
            raise EpisodeError(f"{name} classes {miss[:10].tolist()} have no items")
    return base, val


def train_head(
    head: FusionHead,
    features: MMFeatures,
    base_classes,
    val_classes,
    config: TrainConfig | None = None,
    *,
    corrupted: MMFeatures | None = None,
    checkpoint_dir=None,
    resume: bool = False,
    restore_best: bool = True,
    desc: str | None = None,
    **overrides,
) -> TrainResult:
    """Meta-train ``head`` episodically on base classes, validating on validation classes.

    Parameters
    ----------
    head : FusionHead
        Modified in place (and returned in the result). A head without parameters (``avg-proto``,
        ``concat``, ``single:*``) is only validated.
    features : MMFeatures
        The whole feature table (all splits); only items of ``base_classes`` enter training
        episodes, only items of ``val_classes`` validation episodes. Never pass novel classes.
    base_classes, val_classes : array-like of int
        Disjoint sets of labels.
    config : TrainConfig, optional
        Default ``TrainConfig()``; ``**overrides`` replace its fields (``steps=500``, ...).
    corrupted : MMFeatures, optional
        Corrupted features of the same items (same labels; e.g. audio with noise); each (item,
        modality) of a training episode takes its features from it with probability
        ``config.corrupt_fraction``.
    checkpoint_dir : str or Path, optional
        Where ``last.*`` (every validation) and ``best.*`` (each new best) are written.
    resume : bool, default False
        Continue from ``checkpoint_dir/last.*`` if it exists (same head, features and config,
        except ``steps``/``progress``/``device``): the run continues exactly.
    restore_best : bool, default True
        Load the best validation weights into ``head`` at the end.
    desc : str, optional
        Label of the progress bar (default ``"train <head.name>"``; e.g. ``"train temperature-ps"``
        for a head registered under another name).

    Returns
    -------
    TrainResult

    Raises
    ------
    FeatureError
        Features not matching the head; a base/validation item with no modality (named); a bad
        ``corrupted`` table.
    EpisodeError
        Overlapping or empty class sets; fewer than ``n_way`` classes.
    CheckpointError
        Resuming from a checkpoint of another head / features / config.
    """
    from .progress import progress_bar

    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    features = align_features(head, features)
    labels = features.labels
    base, val = _check_classes(labels, base_classes, val_classes)
    base_items, val_items = class_items(labels, base), class_items(labels, val)
    check_items_have_modality(features, "features", np.concatenate([base_items, val_items]))
    if corrupted is not None:
        _check_corrupted(features, corrupted)
    dev = torch.device(cfg.device)
    head.to(dev)
    feats = features_to(features, dev)
    cfeats = None
    if corrupted is not None and cfg.corrupt_fraction > 0:
        cfeats = features_to(corrupted, dev)
    val_eps = validation_episodes(labels, val, cfg)
    val_seen = np.unique(np.concatenate([val_eps.support.ravel(), val_eps.query.ravel()]))

    meta = _head_meta(head, features)
    run = {"config": cfg.to_dict(), "base_classes": base.tolist(), "val_classes": val.tolist(), "corrupted": corrupted is not None}
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None

    def validate() -> float:
        return float(evaluate_head(head, feats, val_eps, device=dev).mean())

    params = [p for p in head.parameters() if p.requires_grad]
    if not params:
        acc = validate()
        hist = [{"step": 0, "loss": float("nan"), "train_acc": float("nan"), "val_acc": acc, "seconds": 0.0}]
        if ckpt is not None:
            save_head(head, ckpt / "best", features, {"step": 0, "val_acc": acc, "head": meta})
        return TrainResult(head, acc, 0, 0, False, hist, _state(head), np.zeros(0, np.int64), val_seen)

    opt = torch.optim.Adam(head.param_groups(cfg.lr, cfg.scale_lr_mult), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, best_acc, best_step, since_best, stopped, history = 0, -math.inf, -1, 0, False, []
    best_state = None
    if resume and ckpt is not None and (ckpt / "last.json").exists():
        saved = json.loads((ckpt / "last.json").read_text())
        where = f"checkpoint {ckpt / 'last.json'}"
        check_head_checkpoint(saved["head"], head, features, where)
        old = dict(saved["run"]["config"])
        new = run["config"]
        diff = [k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k]]
        if diff:
            raise CheckpointError(f"{where} was trained with another config: " + ", ".join(f"{k}={old.get(k)!r} (now {new[k]!r})" for k in diff))
        for k, what in (("base_classes", "base classes"), ("val_classes", "validation classes"), ("corrupted", "corrupted-table setting")):
            if saved["run"].get(k) != run[k]:
                raise CheckpointError(f"{where} was trained with other {what}: {saved['run'].get(k)} (now {run[k]})")
        tensors = load_file(str(ckpt / "last.safetensors"))
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        _load_optim(opt, tensors, saved["optim"])
        _rng_load(saved.get("rng", {}))
        step, best_acc, best_step = int(saved["step"]), float(saved["best_val_acc"]), int(saved["best_step"])
        since_best, stopped, history = int(saved["evals_since_best"]), bool(saved["stopped_early"]), list(saved["history"])
        if (ckpt / "best.safetensors").exists():
            best_state = load_file(str(ckpt / "best.safetensors"))
    else:
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)

    def save_last() -> None:
        if ckpt is None:
            return
        ckpt.mkdir(parents=True, exist_ok=True)
        tensors = {f"head.{k}": v for k, v in _state(head).items()}
        otensors, other = _optim_tensors(opt)
        tensors.update(otensors)
        doc = {
            "format": FORMAT, "step": step, "best_val_acc": best_acc, "best_step": best_step, "evals_since_best": since_best,
            "stopped_early": stopped, "rng": _rng_dump(), "head": meta, "run": run, "optim": other, "history": history,
        }
        _atomic_write(ckpt / "last.safetensors", lambda t: save_file(tensors, str(t)))
        _atomic_write(ckpt / "last.json", lambda t: t.write_text(json.dumps(doc, indent=1)))

    seen = np.zeros(len(features), dtype=bool)
    cuda_devs = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    bar = progress_bar(total=cfg.steps, initial=min(step, cfg.steps), disable=not cfg.progress, desc=desc or f"train {head.name}", dynamic_ncols=True)
    run_loss, run_acc, n_run, t0 = 0.0, 0.0, 0, time.perf_counter()
    head.train()
    while step < cfg.steps and not stopped:
        eps = training_episodes(labels, base, cfg, step)
        seen[eps.support.ravel()] = True
        seen[eps.query.ravel()] = True
        batch = feats.batch(eps, device=dev)
        cbatch = cfeats.batch(eps, device=dev) if cfeats is not None else None
        batch = _augment(batch, cbatch, cfg, step)
        with torch.random.fork_rng(devices=cuda_devs):
            torch.manual_seed(_seed(cfg.seed, step, 1))
            logits, _ = head(batch)
            loss, acc = episode_loss(logits, batch.query_labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
        step += 1
        run_loss, run_acc, n_run = run_loss + float(loss.detach()), run_acc + float(acc), n_run + 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            vacc = validate()
            history.append({"step": step, "loss": run_loss / n_run, "train_acc": run_acc / n_run, "val_acc": vacc,
                            "seconds": time.perf_counter() - t0})
            bar.set_postfix(loss=f"{run_loss / n_run:.3f}", val_acc=f"{vacc:.3f}", best=f"{max(best_acc, vacc):.3f}")
            run_loss, run_acc, n_run = 0.0, 0.0, 0
            if vacc > best_acc:
                best_acc, best_step, since_best = vacc, step, 0
                best_state = _state(head)
                if ckpt is not None:
                    save_head(head, ckpt / "best", features, {"step": step, "val_acc": vacc, "head": meta})
            else:
                since_best += 1
                if cfg.patience is not None and since_best >= cfg.patience:
                    stopped = True
            save_last()
        else:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    final = _state(head)
    if restore_best and best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return TrainResult(
        head, float(best_acc) if best_acc > -math.inf else float("nan"), best_step, step, stopped, history, final,
        np.flatnonzero(seen).astype(np.int64), val_seen,
    )
