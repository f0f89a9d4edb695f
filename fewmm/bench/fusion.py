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
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..clihelp import HelpFormatter, add_device_argument
from ..errors import FewmmError
from ..metrics import mean_ci, paired_difference
from ..multimodal import MMFeatures
from ..progress import format_seconds
from .runner import Reporter, environment

FIXED = ("avg-proto", "concat")
TRAINED = ("gmu", "attention", "am3", "temperature", "temperature-ps")
#: Trained heads given a label of their own: label -> (registry name, hyper-parameters).
HEAD_SPECS = {"temperature-ps": ("temperature", {"per_sample": True})}
TASK_DEFAULTS = {
    "digits-av": {"corruption": "noise:0", "corrupt_modality": "audio", "folds": ["A", "B"], "queries": 15},
    "esc50-text": {"corruption": "noise:0", "corrupt_modality": "audio", "folds": ["default"], "queries": 3},
}
FUSION_FIELDS = [
    "task", "fold", "condition", "head", "kind", "ways", "shots", "queries", "episodes", "accuracy", "ci95",
    "paired_ref", "paired_delta", "paired_ci95", "weight_names", "mean_weights_clean_items",
    "mean_weights_corrupted_items", "best_val_acc", "train_steps", "seed",
]


def _relabel(f: MMFeatures, labels: np.ndarray, names: list[str], ct) -> MMFeatures:
    return MMFeatures(f.features, f.mask, f.modalities, labels, names, ct, dict(f.info))


def _with_val_items_as_classes(task) -> tuple[MMFeatures, MMFeatures, np.ndarray, np.ndarray, dict]:
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
    gc = _relabel(task.corrupted, labels, names, ct)
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
    from .. import heads as H
    from .. import tasks as T
    from ..encoders import resolve_device
    from ..train import TrainConfig, train_head

    torch.set_num_threads(args.threads)
    dev = str(resolve_device(getattr(args, "device", "auto")))
    spec = TASK_DEFAULTS[args.task]
    folds = args.folds.split(",") if args.folds else spec["folds"]
    shots = [int(s) for s in args.shots.split(",")]
    cmod = spec["corrupt_modality"]
    queries = args.queries or spec["queries"]
    stem = args.name or f"fusion-{args.task}"
    header = {
        "experiment": "adaptive modality weighting", "task": args.task, "command": "python -m fewmm.bench.fusion " + shlex.join(args.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": args.seed, "episodes": args.episodes,
        "corruption": spec["corruption"], "corrupt_modality": cmod, "environment": environment(), "folds": {},
        "training": {}, "device": dev, "protocol": __doc__,
    }
    rep = Reporter(Path(args.out), stem, header, fields=FUSION_FIELDS)
    rep.check_writable()
    t0 = time.time()
    trained_heads = args.heads.split(",") if args.heads else list(TRAINED)
    rep.say(f"fewmm fusion: task {args.task}, fold(s) {', '.join(folds)}; trained heads {', '.join(trained_heads)} "
            f"({args.steps} steps each){'' if args.no_controls else ', + single-modality controls if the task has several item modalities'}; "
            f"{args.ways}-way {'/'.join(map(str, shots))}-shot {queries}-query, {args.episodes} test episodes per setting, "
            f"seed {args.seed}, device {dev}\n  results: {rep.json_path} and {rep.csv_path} (written after the first fold)")
    for fi, fold in enumerate(folds):
        rep.say(f"[fold {fi + 1}/{len(folds)}] {args.task} fold {fold}: {format_seconds(time.time() - t0)} elapsed"
                + (f", about {format_seconds((time.time() - t0) / fi * (len(folds) - fi))} left" if fi else ""))
        kw = {} if fold == "default" else {"fold": fold}
        task = T.build(args.task, root=args.data_root, corruption=spec["corruption"], device=dev, **kw)
        feats, feats_c, base, val, val_note = _with_val_items_as_classes(task)
        header["folds"][fold] = {**task.splits_record(), **val_note, "info": task.info}
        item_mods = list(task.features.modalities)
        # --- train -------------------------------------------------------------------------
        trained = {}
        heads = args.heads.split(",") if args.heads else list(TRAINED)
        unknown = [h for h in heads if h not in TRAINED]
        if unknown:
            raise FewmmError(f"--heads: unknown trained head(s) {unknown}; choose from {list(TRAINED)}")
        to_train = [(h, tuple(item_mods)) for h in heads]
        if len(item_mods) > 1 and not args.no_controls:  # controls: the learned projection on one modality alone
            to_train += [("gmu", (m,)) for m in item_mods]
        for hname, mods in to_train:
            label = hname if len(mods) == len(item_mods) else f"proj[{mods[0]}]"
            f_h = feats if len(mods) == len(item_mods) else feats.select_modalities(mods)
            c_h = feats_c if len(mods) == len(item_mods) else feats_c.select_modalities(mods)
            reg_name, hp = HEAD_SPECS.get(hname, (hname, {}))
            head = H.create(reg_name, f_h, seed=args.seed, **hp)
            cfg = TrainConfig(n_way=args.ways, n_shot=(1, 5), n_query=min(queries, 15), steps=args.steps,
                              eval_every=max(1, args.steps // 10), val_episodes=200, val_shot=1,
                              val_query=min(queries, 7 if args.task == "esc50-text" else 15), patience=4,
                              modality_dropout=0.2 if len(mods) > 1 else 0.0, corrupt_fraction=0.5,
                              seed=args.seed, progress=not args.quiet, device=dev)
            ckpt = Path(args.checkpoints) / f"{args.task}-{fold}-{label}" if args.checkpoints else None
            t1 = time.time()
            res = train_head(head, f_h, base, val, cfg, corrupted=c_h, checkpoint_dir=ckpt, resume=bool(ckpt))
            trained[label] = (res.head, mods)
            header["training"][f"{fold}/{label}"] = {"best_val_acc": res.best_val_acc, "best_step": res.best_step,
                                                     "steps": res.steps, "stopped_early": res.stopped_early,
                                                     "seconds": round(time.time() - t1, 1), "config": cfg.to_dict()}
            rep.say(f"[train] {args.task}/{fold} {label}: best val acc {res.best_val_acc:.3f} at step {res.best_step}")
        # --- evaluate on novel classes -------------------------------------------------------
        clean = task.features
        conditions = {"clean": (clean, None)}
        cf, cmask = T.apply_corruption(clean, task.corrupted, cmod, 0.5, seed=args.seed)
        conditions[f"{cmod}-corrupt50"] = (cf, cmask)
        for m in item_mods if len(item_mods) > 1 else []:
            conditions[f"{m}-missing50"] = (T.apply_missing(clean, m, 0.5, seed=args.seed), None)
        evaluated = [(f"single:{m}", H.create(f"single:{m}", clean, seed=args.seed), tuple(item_mods)) for m in item_mods]
        evaluated += [(n, H.create(n, clean, seed=args.seed), tuple(item_mods)) for n in FIXED]
        evaluated += [(lbl, h, mods) for lbl, (h, mods) in trained.items()]
        for cond, (cfeat, cmask_items) in conditions.items():
            for k in shots:
                ep = task.episodes("novel", args.ways, k, queries, args.episodes, seed=args.seed)
                accs, rows = {}, []
                for label, head, mods in evaluated:
                    if len(mods) < len(item_mods) and cond.endswith("missing50") and cond.split("-")[0] in mods:
                        continue  # a single-modality control cannot score items lacking its modality
                    f_eval = cfeat if len(mods) == len(item_mods) else cfeat.select_modalities(mods)
                    acc, w = H.evaluate_head(head, f_eval, ep, return_weights=True)
                    accs[label] = acc
                    wc, wx = _weights_by_item_kind(w, ep.query, cmask_items)
                    est = mean_ci(acc)
                    kind = "single" if label.startswith("single:") else "fixed" if label in FIXED else "control" if label.startswith("proj[") else "adaptive"
                    rows.append({"task": args.task, "fold": fold, "condition": cond, "head": label, "kind": kind,
                                 "ways": args.ways, "shots": k, "queries": queries, "episodes": len(ep),
                                 "accuracy": round(est.mean, 4), "ci95": round(est.ci95, 4),
                                 "weight_names": list(head.weight_names), "mean_weights_clean_items": wc,
                                 "mean_weights_corrupted_items": wx, "seed": args.seed,
                                 "best_val_acc": header["training"].get(f"{fold}/{label}", {}).get("best_val_acc"),
                                 "train_steps": header["training"].get(f"{fold}/{label}", {}).get("steps")})
                ref = max(FIXED, key=lambda n: accs[n].mean())
                for r in rows:
                    if r["head"] != ref:
                        d = paired_difference(accs[r["head"]], accs[ref])
                        r.update(paired_ref=ref, paired_delta=round(d.mean, 4), paired_ci95=round(d.ci95, 4))
                    rep.rows.append(r)
                    if not args.quiet:
                        delta = f"{r['paired_delta']:+6.2f} ± {r['paired_ci95']:.2f} vs {ref}" if "paired_delta" in r else "(reference)"
                        print(f"{args.task:<10} {fold:<7} {cond:<15} {k}-shot {r['head']:<14} {r['accuracy']:6.2f} ± {r['ci95']:.2f}  {delta}", flush=True)
                rep.flush()
    header["wall_seconds"] = round(time.time() - t0, 1)
    rep.flush(finished=True)
    rep.say(f"wrote {rep.json_path}")
    return rep.json_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fewmm.bench.fusion", description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--task", required=True, choices=sorted(TASK_DEFAULTS), help="multimodal task")
    p.add_argument("--folds", help="comma-separated folds (default: every fold of the task; digits-av: A,B)")
    p.add_argument("--ways", type=int, default=5, help="N classes per episode")
    p.add_argument("--shots", default="1,5", help="K, comma-separated")
    p.add_argument("--queries", type=int, help="queries per class (default: digits-av 15, esc50-text 3)")
    p.add_argument("--episodes", type=int, default=600, help="test episodes per setting")
    p.add_argument("--steps", type=int, default=400, help="training steps per head (8 episodes each)")
    p.add_argument("--seed", type=int, default=0, help="seed of training, corruption and episodes")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small ops on a busy CPU)")
    add_device_argument(p)
    p.add_argument("--data-root", help="data folder (default: $FEWMM_DATA, then ~/.cache/fewmm/data)")
    p.add_argument("--out", default="results", help="folder for the JSON + CSV results")
    p.add_argument("--name", help="file stem of the results (default fusion-<task>)")
    p.add_argument("--checkpoints", default=os.path.join(os.path.expanduser("~"), ".cache", "fewmm", "heads"),
                   help="folder for resumable head checkpoints ('' to disable)")
    p.add_argument("--heads", help=f"comma-separated trained heads (default all: {','.join(TRAINED)})")
    p.add_argument("--no-controls", action="store_true", help="skip the single-modality projection controls proj[<m>]")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
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
    for name, v, lo in (("--ways", a.ways, 2), ("--episodes", a.episodes, 1), ("--steps", a.steps, 1), ("--threads", a.threads, 1),
                        ("--queries", a.queries if a.queries is not None else 1, 1), ("--shots", min(shots), 1)):
        if v < lo:
            p.error(f"{name} must be >= {lo}, got {v}")
    try:
        run(a)
    except FewmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
