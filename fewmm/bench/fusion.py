"""Adaptive modality weighting on real multimodal few-shot tasks: ``python -m fewmm.bench.fusion``.

For each task fold: the trainable heads (GMU, attention, AM3, learned temperature - global and per
sample, ``temperature-ps``) are meta-trained
on the BASE classes (ProtoNet-style episodes, shots drawn from {1, 5}, with modality dropout and a
random half of the items' corruptible modality swapped to its corrupted features, so gates can
learn to distrust it); validation for early stopping / best checkpoint uses validation classes, or
held-out items of the base classes where a task has no validation classes (digits-av). Then every
head - single modalities, the fixed fusion baselines (average of per-modality prototype
probabilities; concatenation), the trained heads, and single-modality controls of the learned
projection - is evaluated on the NOVEL classes under each condition, all on the same episodes:

* ``clean``;
* ``<m>-corrupt50``: modality m corrupted (e.g. audio + white noise at 0 dB SNR) for a seeded 50% of
  the items (support and query);
* ``<m>-missing50``: modality m missing for a seeded 50% of the items.

Reported per (condition, shots, head): accuracy ± 95% CI, the paired difference to the best fixed
fusion of that condition (same episodes), and the mean explained modality weights on clean vs
corrupted query items.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..clihelp import HelpFormatter, add_device_argument, check_unique, interrupted_message, seed_type, sigterm_as_interrupt
from ..data.manifest import DEFAULT_SPLIT_FRACTIONS as DEFAULT_FRACTIONS
from ..errors import FewmmError
from ..metrics import mean_ci, paired_difference
from ..multimodal import MMFeatures
from ..plugins import add_plugin_argument, import_plugins
from ..progress import format_seconds
from .runner import Reporter, environment

FIXED = ("avg-proto", "concat")
#: Trainers of the trained heads (fewmm.engine.TRAINERS); the MAML family adapts a Proto-MAML
#: classifier (initialised from the support prototypes) per episode, at training and test.
TRAINERS = ("protonet", "fomaml", "anil")
#: Hyper-parameters of the MAML-family trainers here (inner loop on the support set).
MAML_KW = {"inner_lr": 0.5, "inner_steps": 1}
TRAINED = ("gmu", "attention", "am3", "temperature", "temperature-ps")
#: Trained heads given a label of their own: label -> (registry name, hyper-parameters).
HEAD_SPECS = {"temperature-ps": ("temperature", {"per_sample": True})}
TASK_DEFAULTS = {
    "digits-av": {"corruption": "noise:0", "corrupt_modality": "audio", "folds": ["A", "B"], "queries": 15},
    "esc50-text": {"corruption": "noise:0", "corrupt_modality": "audio", "folds": ["default"], "queries": 3},
}
FUSION_FIELDS = [
    "task", "fold", "condition", "head", "trainer", "kind", "ways", "shots", "queries", "episodes", "accuracy", "ci95",
    "paired_ref", "paired_delta", "paired_ci95", "weight_names", "mean_weights_clean_items",
    "mean_weights_corrupted_items", "best_val_acc", "train_steps", "seed",
]


def _relabel(f: MMFeatures, labels: np.ndarray, names: list[str], ct) -> MMFeatures:
    return MMFeatures(f.features, f.mask, f.modalities, labels, names, ct, dict(f.info))


def with_val_items_as_classes(task) -> tuple[MMFeatures, MMFeatures, np.ndarray, np.ndarray, dict]:
    """Features for training where a task validates on held-out base ITEMS: those items get new
    labels (``n_classes + c``, class text copied), so the trainer's class-based sampling keeps
    them out of training episodes and uses only them for validation."""
    f = task.features
    if len(task.val_classes):
        return f, task.corrupted, task.base_classes, task.val_classes, {}
    n_c = len(f.class_names)
    labels = f.labels.copy()
    labels[task.val_items] += n_c
    names = list(f.class_names) + [f"{c} (validation items)" for c in f.class_names]
    ct = None if f.class_text is None else torch.cat([f.class_text, f.class_text])
    g = _relabel(f, labels, names, ct)
    gc = None if task.corrupted is None else _relabel(task.corrupted, labels, names, ct)
    val = np.unique(labels[task.val_items])
    return g, gc, task.base_classes, val, {"validation": f"held-out base items ({len(task.val_items)}), relabelled as {val.tolist()}"}


def _weights_by_item_kind(weights: np.ndarray, query_items: np.ndarray, corrupted_items: np.ndarray | None):
    """Mean weights (n_w,) over query positions whose item is clean / corrupted."""
    w = weights.reshape(-1, weights.shape[-1])
    items = query_items.reshape(-1)
    if corrupted_items is None:
        return w.mean(0).tolist(), None
    c = np.isin(items, np.flatnonzero(corrupted_items))
    clean = w[~c].mean(0).tolist() if (~c).any() else None
    cor = w[c].mean(0).tolist() if c.any() else None
    return clean, cor


def run(args) -> Path:
    from ..encoders import resolve_device

    torch.set_num_threads(args.threads)
    dev = str(resolve_device(getattr(args, "device", "auto")))
    task_name, task_kw, spec = task_spec(args)
    task_label = spec["label"]
    folds = args.folds.split(",") if args.folds else spec["folds"]
    shots = [int(s) for s in args.shots.split(",")]
    cmod = spec["corrupt_modality"]
    queries = args.queries or spec["queries"]
    stem = args.name or f"fusion-{task_label}"
    header = {
        "experiment": "adaptive modality weighting", "task": task_label, "command": "python -m fewmm.bench.fusion " + shlex.join(args.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": args.seed, "episodes": args.episodes,
        "corruption": spec["corruption"], "corrupt_modality": cmod, "environment": environment(), "folds": {},
        "training": {}, "device": dev, "protocol": __doc__,
    }
    rep = Reporter(Path(args.out), stem, header, fields=FUSION_FIELDS)
    rep.check_writable()
    t0 = time.time()
    patience = getattr(args, "patience", 4)
    trained_heads = args.heads.split(",") if args.heads else list(TRAINED)
    rep.say(f"fewmm fusion: task {task_label}, fold(s) {', '.join(folds)}; trained heads {', '.join(trained_heads)} "
            f"(up to {args.steps} steps each{f', early stop after {patience} validations without gain' if patience else ''}){'' if args.no_controls else ', + single-modality controls if the task has several item modalities'}; "
            f"{args.ways}-way {'/'.join(map(str, shots))}-shot {queries or 'auto'}-query, {args.episodes} test episodes per setting, "
            f"seed {args.seed}, device {dev}\n  results: {rep.json_path} and {rep.csv_path} (written after the first fold)")
    if task_name == "manifest":  # --ways/--shots/--queries against the labels and splits, before any encoding
        from ..tasks.manifest import ManifestSplits

        _manifest_counts(ManifestSplits(**task_kw), args, shots, queries)
    interrupt_note: dict = {}
    try:
        _run_folds(args, rep, header, folds, task_name, task_kw, spec, shots, queries, cmod, dev, t0, interrupt_note)
    except KeyboardInterrupt as e:
        rep.flush()  # the rows measured so far, finished: false
        e.fewmm_fusion = {"json": rep.json_path, "csv": rep.csv_path, "rows": len(rep.rows),
                          "resumable": interrupt_note.get("resumable")}
        raise
    header["wall_seconds"] = round(time.time() - t0, 1)
    rep.flush(finished=True)
    if not args.quiet and task_name == "manifest":  # CSV -> trained heads -> this table, in one command
        from .report import fusion_table

        print("\n" + fusion_table({**header, "results": rep.rows}), flush=True)
    rep.say(f"wrote {rep.json_path} and {rep.csv_path}")
    return rep.json_path


def _run_folds(args, rep, header, folds, task_name, task_kw, spec, shots, queries, cmod, dev, t0, note) -> None:
    """Train and evaluate every fold (the body of :func:`run`); rows go to ``rep`` as measured."""
    from .. import heads as H
    from .. import tasks as T
    from ..train import TrainConfig, train_head

    task_label = spec["label"]
    for fi, fold in enumerate(folds):
        rep.say(f"[fold {fi + 1}/{len(folds)}] {task_label} fold {fold}: {format_seconds(time.time() - t0)} elapsed"
                + (f", about {format_seconds((time.time() - t0) / fi * (len(folds) - fi))} left" if fi else ""))
        kw = dict(task_kw) if fold == "default" else {**task_kw, "fold": fold}
        task = T.build(task_name, root=args.data_root, corruption=spec["corruption"], device=dev, **kw)
        if task_name == "manifest":  # what the data allow: checked here, before any training
            cmod = task.info["corrupt_modality"]
            c = task.info["corruption"]
            header.update(corruption="none" if c is None else f"{c['kind']}:{c['level']:g}", corrupt_modality=cmod)
            queries, train_kw = _manifest_counts(task, args, shots, queries)
        else:
            train_kw = {"n_shot": (1, 5), "val_query": min(queries, 7 if args.task == "esc50-text" else 15)}
        feats, feats_c, base, val, val_note = with_val_items_as_classes(task)
        if task_name == "manifest":
            train_kw["val_way"] = min(args.ways, len(val))
        header["folds"][fold] = {**task.splits_record(), **val_note, "info": task.info}
        item_mods = list(task.features.modalities)
        # --- train -------------------------------------------------------------------------
        trained = {}
        heads = args.heads.split(",") if args.heads else list(TRAINED)
        unknown = [h for h in heads if h not in TRAINED and (h in FIXED or h not in H.HEADS)]  # H.HEADS: plugins too
        if unknown:
            raise FewmmError(f"--heads: unknown trained head(s) {unknown}; choose from {list(TRAINED)} "
                             "or a head registered by a --plugin module or a fewmm.heads entry point")
        to_train = [(h, tuple(item_mods)) for h in heads]
        if len(item_mods) > 1 and not args.no_controls:  # controls: the learned projection on one modality alone
            full = [m for j, m in enumerate(item_mods) if bool(task.features.mask[:, j].all())]
            to_train += [("gmu", (m,)) for m in full]  # only where every item has m: a control cannot score the others
            if len(full) < len(item_mods):
                header.setdefault("notes", []).append(
                    f"fold {fold}: no proj[<m>] control for {', '.join(m for m in item_mods if m not in full)}: some items lack it")
        trainers = args.trainers.split(",") if getattr(args, "trainers", None) else list(TRAINERS)
        # every trainable head with every trainer; the single-modality controls with protonet only
        jobs = [(h, mods, t) for h, mods in to_train for t in (trainers if len(mods) == len(item_mods) else ["protonet"])]
        for hname, mods, tname in jobs:
            label = hname if len(mods) == len(item_mods) else f"proj[{mods[0]}]"
            key = f"{fold}/{label}" + ("" if tname == "protonet" else f"@{tname}")
            f_h = feats if len(mods) == len(item_mods) else feats.select_modalities(mods)
            c_h = feats_c if feats_c is None or len(mods) == len(item_mods) else feats_c.select_modalities(mods)
            reg_name, hp = HEAD_SPECS.get(hname, (hname, {}))
            head = H.create(reg_name, f_h, seed=args.seed, **hp)
            cfg = TrainConfig(n_way=args.ways, n_query=min(queries, 15), steps=args.steps,
                              eval_every=max(1, args.steps // getattr(args, "validations", 10)), val_episodes=200, val_shot=1,
                              patience=getattr(args, "patience", 4) or None,
                              modality_dropout=0.2 if len(mods) > 1 else 0.0, corrupt_fraction=0.5,
                              seed=args.seed, progress=not args.quiet, device=dev, **train_kw)
            ckpt = (Path(args.checkpoints) / f"{spec['checkpoint_prefix']}-{fold}-{label}{'' if tname == 'protonet' else '-' + tname}"
                    if args.checkpoints else None)
            if ckpt is not None:
                note["resumable"] = f"head checkpoints in {args.checkpoints} (the rerun resumes each head's training there)"
            resumed = None
            if ckpt is not None and (ckpt / "last.json").exists():
                try:
                    resumed = int(json.loads((ckpt / "last.json").read_text())["step"])
                except (OSError, ValueError, KeyError, TypeError):
                    resumed = None  # train_head says what is wrong with the checkpoint
                if resumed is not None:
                    rep.say(f"[train] {task_label}/{fold} {label}: resuming from checkpoint {ckpt} at step {resumed} of {args.steps}")
            t1 = time.time()
            tkw = {} if tname == "protonet" else dict(MAML_KW)
            res = train_head(head, f_h, base, val, cfg, trainer=tname, trainer_kwargs=tkw, corrupted=c_h, checkpoint_dir=ckpt,
                             resume=bool(ckpt), desc=f"train {label} ({tname})")
            trained[(label, tname)] = (res.head, mods)
            header["training"][key] = {"trainer": tname, "trainer_config": res.trainer,"best_val_acc": res.best_val_acc, "best_step": res.best_step,
                                                     "steps": res.steps, "stopped_early": res.stopped_early,
                                                     "resumed_from_step": resumed,
                                                     "seconds": round(time.time() - t1, 1), "config": cfg.to_dict()}
            rep.say(f"[train] {task_label}/{fold} {label} ({tname}): best val acc {res.best_val_acc:.3f} at step {res.best_step}")
        # --- evaluate on novel classes -------------------------------------------------------
        clean = task.features
        conditions = {"clean": (clean, None)}
        if task.corrupted is not None:
            cf, cmask = T.apply_corruption(clean, task.corrupted, cmod, 0.5, seed=args.seed)
            conditions[f"{cmod}-corrupt50"] = (cf, cmask)
        for j, m in enumerate(item_mods if len(item_mods) > 1 else []):
            # candidates: items that keep another modality (all items of digits-av: the same choice as with items=None)
            others = np.delete(clean.mask.numpy(), j, axis=1).any(axis=1)
            conditions[f"{m}-missing50"] = (T.apply_missing(clean, m, 0.5, seed=args.seed, items=np.flatnonzero(others)), None)
        evaluated = [(f"single:{m}", "", H.create(f"single:{m}", clean, seed=args.seed), tuple(item_mods)) for m in item_mods]
        evaluated += [(n, "", H.create(n, clean, seed=args.seed), tuple(item_mods)) for n in FIXED]
        evaluated += [(lbl, tname, h, mods) for (lbl, tname), (h, mods) in trained.items()]
        # --- the reference of the paired differences: the fixed fusion best on VALIDATION episodes
        refs = choose_reference(task, feats, feats_c, val, conditions, shots, args, cmod, dev)
        header.setdefault("reference_choice", {})[fold] = refs
        for cond, (cfeat, cmask_items) in conditions.items():
            for k in shots:
                ep = task.episodes("novel", args.ways, k, queries, args.episodes, seed=args.seed)
                accs, rows = {}, []
                for label, tname, head, mods in evaluated:
                    if len(mods) < len(item_mods) and cond.endswith("missing50") and cond.split("-")[0] in mods:
                        continue  # a single-modality control cannot score items lacking its modality
                    f_eval = cfeat if len(mods) == len(item_mods) else cfeat.select_modalities(mods)
                    row_key = label if tname in ("", "protonet") else f"{label}@{tname}"
                    if tname in ("", "protonet"):
                        acc, w = H.evaluate_head(head, f_eval, ep, return_weights=True)
                        wc, wx = _weights_by_item_kind(w, ep.query, cmask_items)
                    else:  # adapt a Proto-MAML classifier on each support set, as in training
                        acc = evaluate_meta_trained(head, tname, f_eval, ep, dev)
                        wc = wx = None
                    accs[row_key] = acc
                    est = mean_ci(acc)
                    kind = "single" if label.startswith("single:") else "fixed" if label in FIXED else "control" if label.startswith("proj[") else "adaptive"
                    tkey = f"{fold}/{row_key}"
                    rows.append({"task": task_label, "fold": fold, "condition": cond, "head": label, "trainer": tname or None,
                                 "kind": kind, "ways": args.ways, "shots": k, "queries": queries, "episodes": len(ep),
                                 "accuracy": round(est.mean, 4), "ci95": round(est.ci95, 4),
                                 "weight_names": list(head.weight_names), "mean_weights_clean_items": wc,
                                 "mean_weights_corrupted_items": wx, "seed": args.seed,
                                 "best_val_acc": header["training"].get(tkey, {}).get("best_val_acc"),
                                 "train_steps": header["training"].get(tkey, {}).get("steps"), "_key": row_key})
                ref = refs[f"{cond}/{k}"]["reference"]
                for r in rows:
                    key = r.pop("_key")
                    if key != ref:
                        d = paired_difference(accs[key], accs[ref])
                        r.update(paired_ref=ref, paired_delta=round(d.mean, 4), paired_ci95=round(d.ci95, 4))
                    for other in trainers:  # the same head trained otherwise, on the same episodes
                        okey = f"{r['head']}@{other}" if other != "protonet" else r["head"]
                        if r["kind"] == "adaptive" and okey != key and okey in accs:
                            d = paired_difference(accs[key], accs[okey])
                            r.setdefault("paired_trainers", {})[other] = [round(d.mean, 4), round(d.ci95, 4)]
                    rep.rows.append(r)
                    if not args.quiet:
                        delta = f"{r['paired_delta']:+6.2f} ± {r['paired_ci95']:.2f} vs {ref}" if "paired_delta" in r else "(reference)"
                        print(f"{task_label:<10} {fold:<7} {cond:<15} {k}-shot {r['head']:<14} {r['trainer'] or '':<8} "
                              f"{r['accuracy']:6.2f} ± {r['ci95']:.2f}  {delta}", flush=True)
                rep.flush()


def evaluate_meta_trained(head, trainer: str, features, episodes, device) -> np.ndarray:
    """Per-episode accuracy (E,) float64 of a head meta-trained with a MAML-family trainer: on each
    episode a Proto-MAML classifier (initialised from the support prototypes) is adapted on the
    support set with the training's inner loop (:data:`MAML_KW`), then scores the queries
    (:meth:`fewmm.engine.MAMLTrainer.evaluate`). ``features`` may differ from the training
    features (corrupted / missing conditions): a new learner is built over them; the trainers used
    here (fomaml, maml, anil) own no meta-parameters besides the head's, so this is exact."""
    from ..engine import HeadLearner, create_trainer

    tr = create_trainer(trainer, **MAML_KW)
    learner = HeadLearner(head, features, device=device)
    with torch.no_grad():  # a fresh trainer builds its MAML from the learner's inner module (evaluate does not)
        tr.prepare(learner, learner.batch(episodes[:1]))
    return tr.evaluate(learner, episodes)


def choose_reference(task, feats, feats_c, val, conditions, shots, args, cmod, dev) -> dict:
    """The reference of the paired differences per (condition, shots): the fixed fusion
    (:data:`FIXED`) with the best mean accuracy on VALIDATION episodes (validation classes, or
    held-out base items relabelled by :func:`with_val_items_as_classes`), under the same condition
    applied to those items; the test (novel-class) episodes are never looked at.

    Returns
    -------
    dict ``"<condition>/<shots>" -> {"reference": name, "val_accuracy": {name: mean %}, "val_episodes": n}``.
    """
    from .. import heads as H
    from .. import tasks as T
    from ..episodes import sample_episodes

    out = {}
    n_way = min(args.ways, len(val))
    for cond in conditions:
        if cond == "clean":
            f = feats
        elif cond.endswith("corrupt50"):
            f, _ = T.apply_corruption(feats, feats_c, cmod, 0.5, seed=args.seed)
        else:
            m = cond[: -len("-missing50")]
            j = list(feats.modalities).index(m)
            others = np.delete(feats.mask.numpy(), j, axis=1).any(axis=1)
            f = T.apply_missing(feats, m, 0.5, seed=args.seed, items=np.flatnonzero(others))
        counts = np.bincount(f.labels, minlength=int(f.labels.max()) + 1)[val]
        for k in shots:
            q = int(min(15, counts.min() - k))
            if q < 1:
                raise FewmmError(f"validation classes have {int(counts.min())} items: too few for {k}-shot reference episodes")
            ep = sample_episodes(f.labels, n_way, k, q, 200, seed=args.seed + 1, classes=val)
            va = {n: round(float(H.evaluate_head(H.create(n, f, seed=args.seed), f, ep).mean()) * 100, 4) for n in FIXED}
            out[f"{cond}/{k}"] = {"reference": max(FIXED, key=lambda n: va[n]), "val_accuracy": va, "val_episodes": len(ep),
                                  "val_way": n_way, "val_query": q}
    return out


def task_spec(args) -> tuple[str, dict, dict]:
    """(registry name, build options, defaults) of ``--task``: a built-in task, or a manifest
    (``manifest:PATH`` or a path ending in .csv/.tsv/.jsonl) with ``--encoder``, ``--class-text``,
    ``--split-seed``, ``--split-fractions`` and ``--corruption``."""
    from ..corrupt import parse_corruption
    from ..data.manifest import MANIFEST_SUFFIXES

    corr = None if args.corruption in (None, "auto") else None if args.corruption == "none" else parse_corruption(args.corruption)
    if args.task in TASK_DEFAULTS:
        spec = {**TASK_DEFAULTS[args.task], "label": args.task, "checkpoint_prefix": args.task}
        if args.corruption not in (None, "auto"):
            raise FewmmError(f"--corruption: only for manifest tasks; {args.task} uses {spec['corruption']}")
        if args.encoder or args.class_text != "column" or args.split_seed or args.split_fractions:
            raise FewmmError("--encoder, --class-text, --split-seed and --split-fractions are for manifest tasks "
                             f"(--task manifest:PATH), not {args.task}")
        return args.task, {}, spec
    path = args.task[len("manifest:"):] if args.task.startswith("manifest:") else args.task
    if not (args.task.startswith("manifest:") or Path(path).suffix.lower() in MANIFEST_SUFFIXES):
        raise FewmmError(f"--task {args.task!r}: unknown task; expected one of {', '.join(sorted(TASK_DEFAULTS))}, "
                         "or manifest:PATH (your own CSV/JSONL manifest)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FewmmError(f"--task {args.task}: manifest {p} not found")
    fractions = DEFAULT_FRACTIONS
    if args.split_fractions:
        try:
            fractions = tuple(float(x) for x in args.split_fractions.split(","))
        except ValueError:
            raise FewmmError(f"--split-fractions: expected three comma-separated numbers (base,val,novel), got "
                             f"{args.split_fractions!r}") from None
    encs = {}
    for kv in args.encoder or []:
        m, sep, name = kv.partition("=")
        if not sep or m not in ("image", "audio", "text") or not name:
            raise FewmmError(f"--encoder {kv!r}: expected MODALITY=NAME with MODALITY image, audio or text")
        encs[m] = name
    ct = None if args.class_text == "none" else args.class_text
    kw = {"path": str(p), "encoders": encs, "class_text": ct, "split_seed": args.split_seed, "split_fractions": fractions,
          "default_corruption": args.corruption in (None, "auto")}
    # checkpoints of another manifest content or other task options are never resumed
    digest = hashlib.sha256(p.read_bytes() + repr(sorted({**kw, "corruption": args.corruption}.items())).encode()).hexdigest()[:12]
    spec = {"corruption": corr, "corrupt_modality": None if corr is None else corr.modality, "folds": ["default"],
            "queries": None, "label": f"manifest-{p.stem}", "checkpoint_prefix": f"manifest-{p.stem}-{digest}"}
    return "manifest", kw, spec


def _manifest_counts(task, args, shots: list[int], queries: int | None) -> tuple[int, dict]:
    """Episode sizes a manifest's splits allow: (evaluation queries per class, training options).

    Raises
    ------
    FewmmError
        Fewer classes in a split than ``--ways``, or too few items per class, naming the split.
    """
    def counts(split):
        return np.bincount(task.labels[task.split_items(split)], minlength=len(task.class_names))[task.split_classes(split)]

    rule = task.info["splits"]["rule"]
    for split in ("base", "novel"):
        n_cls = len(task.split_classes(split))
        if n_cls < args.ways:
            raise FewmmError(f"{task.info['manifest']}: the {split} split has {n_cls} classes, fewer than --ways {args.ways} "
                             f"(splits: {rule}); lower --ways, or change --split-fractions or the 'split' column")
    novel, base = counts("novel"), counts("base")
    k_max = max(shots)
    if queries is None:
        queries = min(15, int(novel.min()) - k_max)
    if int(novel.min()) < k_max + queries or queries < 1:
        small = [task.class_names[c] for c, n in zip(task.split_classes("novel"), novel) if n < k_max + max(1, queries)]
        raise FewmmError(f"{task.info['manifest']}: {k_max}-shot episodes with {max(1, queries)} queries need "
                         f"{k_max + max(1, queries)} items per novel class; {', '.join(map(repr, small[:10]))} "
                         f"{'has' if len(small) == 1 else 'have'} fewer (smallest: {int(novel.min())}); lower --shots/--queries")
    n_shot = tuple(k for k in (1, 5) if k < int(base.min())) or (1,)
    if int(base.min()) < 2:
        raise FewmmError(f"{task.info['manifest']}: a base class has {int(base.min())} item(s); training episodes need at least 2")
    val_items = task.split_items("val")
    val_min = int(np.bincount(task.labels[val_items])[np.unique(task.labels[val_items])].min()) if val_items.size else 0
    if val_min < 2:
        raise FewmmError(f"{task.info['manifest']}: a validation class has {val_min} item(s); validation episodes need at least 2")
    return queries, {"n_shot": n_shot, "val_query": max(1, min(queries, val_min - 1))}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fewmm.bench.fusion", description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--task", required=True, metavar="TASK",
                   help=f"multimodal task: {', '.join(sorted(TASK_DEFAULTS))}, or manifest:PATH for your own CSV/JSONL manifest "
                        "(items with any of image/audio/text; optional class_text and split columns)")
    p.add_argument("--encoder", action="append", default=[], metavar="MODALITY=NAME",
                   help="manifest tasks: encoder of a modality, repeatable (default image=efficientnet-lite2, "
                        "audio=whisper-tiny-en, text=minilm-l6)")
    p.add_argument("--class-text", default="column",
                   help="manifest tasks: 'column' (the class_text column, if any; default), 'none', or a template "
                        "such as 'a photo of a {label}'")
    p.add_argument("--split-seed", type=seed_type, default=0,
                   help="manifest tasks without a split column: seed of the class-disjoint split (default 0)")
    p.add_argument("--split-fractions", default=None, metavar="BASE,VAL,NOVEL",
                   help="manifest tasks without a split column: fractions of the classes (default 0.6,0.2,0.2)")
    p.add_argument("--corruption", default=None,
                   help="manifest tasks: the corruption of the '<modality>-corrupt50' condition, e.g. noise:0 or "
                        "occlude:0.25, or 'none' (default auto: noise:0 on audio if present, else occlude:0.25 on images)")
    p.add_argument("--folds", help="comma-separated folds (default: every fold of the task; digits-av: A,B)")
    p.add_argument("--ways", type=int, default=5, help="N classes per episode")
    p.add_argument("--shots", default="1,5", help="K, comma-separated")
    p.add_argument("--queries", type=int, help="queries per class (default: digits-av 15, esc50-text 3; manifests: up to 15, "
                   "as many as the smallest novel class allows)")
    p.add_argument("--episodes", type=int, default=600, help="test episodes per setting")
    p.add_argument("--steps", type=int, default=400, help="maximum training steps per head (8 episodes each; validated every "
                   "steps/10 steps); training stops earlier after --patience validations without a better accuracy")
    p.add_argument("--validations", type=int, default=10, help="validations per head's training (every steps/N steps; "
                   "the best one's weights are kept)")
    p.add_argument("--patience", type=int, default=4, help="stop a head's training after this many validations in a row "
                   "without a better validation accuracy; 0: never stop early, train all --steps")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of training, corruption and episodes")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small ops on a busy CPU)")
    add_device_argument(p)
    p.add_argument("--data-root", help="data folder (default: $FEWMM_DATA, then ~/.cache/fewmm/data)")
    p.add_argument("--out", default="results", help="folder for the JSON + CSV results")
    p.add_argument("--name", help="file stem of the results (default fusion-<task>)")
    p.add_argument("--checkpoints", default=os.path.join(os.path.expanduser("~"), ".cache", "fewmm", "heads"),
                   help="folder for resumable head checkpoints ('' to disable)")
    p.add_argument("--trainers", help=f"comma-separated trainers of the trained heads (default {','.join(TRAINERS)}; "
                   "any of fewmm.engine.TRAINERS: protonet, maml, fomaml, anil)")
    p.add_argument("--heads", help=f"comma-separated trained heads (default all: {','.join(TRAINED)})")
    p.add_argument("--no-controls", action="store_true", help="skip the single-modality projection controls proj[<m>]")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    add_plugin_argument(p)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = build_parser()
    a = p.parse_args(argv)
    a.argv = argv
    try:
        shots = [int(x) for x in a.shots.split(",")]
    except ValueError:
        p.error(f"--shots: expected comma-separated integers, got {a.shots!r}")
    for name, v, lo in (("--ways", a.ways, 2), ("--episodes", a.episodes, 1), ("--steps", a.steps, 1), ("--patience", a.patience, 0), ("--validations", a.validations, 1),
                        ("--threads", a.threads, 1),
                        ("--queries", a.queries if a.queries is not None else 1, 1), ("--shots", min(shots), 1)):
        if v < lo:
            p.error(f"{name} must be >= {lo}, got {v}")
    try:
        check_unique(shots, "--shots")
        check_unique([h.strip() for h in a.heads.split(",")] if a.heads else [], "--heads")
    except ValueError as e:
        p.error(str(e))
    if a.class_text not in ("column", "none"):
        from ..tasks.manifest import check_label_template

        try:
            check_label_template(a.class_text, "--class-text")
        except FewmmError as e:
            p.error(str(e) + " (or 'column' / 'none')")
    with sigterm_as_interrupt():  # SIGTERM (kill, timeout, Slurm walltime) stops like Ctrl-C
        try:
            import_plugins(a.plugin)
            run(a)
        except FewmmError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print(interrupted_message(e, _kept(e)), file=sys.stderr)
            return 130
    return 0


def _kept(exc: BaseException) -> str:
    """What an interrupted fusion run kept (rows written, finished: false; head checkpoints)."""
    rec = getattr(exc, "fewmm_fusion", None)
    if rec is None:
        return "nothing measured yet"
    kept = (f"the {rec['rows']} row(s) measured so far are in {rec['json']} and {rec['csv']} (finished: false)"
            if rec["rows"] else "no row was measured yet")
    if rec.get("resumable"):
        kept += f"; {rec['resumable']}"
    return kept


if __name__ == "__main__":
    sys.exit(main())
