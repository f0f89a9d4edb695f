"""Transfer from a joint item-text space: ``python -m fewmm.bench.transfer``.

For each task fold and item modality (esc50-text: audio; digits-av: image and audio, each on its
own):

1. **Aligned pair.** No CLIP/CLAP weights exist here, so a bridge (:func:`fewmm.aligned.train_bridge`)
   maps the item encoder's features into the class-text encoder's space, trained on the items
   and class texts of the BASE classes only (task ``"base"`` split: digits-av's held-out
   validation items and every novel class are left out).
2. **Zero-shot** over all novel classes at once (every novel item scored against every novel
   class text), and over the validation classes where the task has them (a diagnostic).
3. **Episodes** (``--protocol episodes``): N-way K-shot episodes on the novel classes from the
   seed; every method on the same episodes (paired differences to ``protonet`` on the raw item
   features): the class-text methods of :func:`fewmm.methods.text_methods` on the bridge
   features, ProtoNet (raw and bridged features), and the kit's AM3 head (item modality + class
   text, trained on base-class episodes as in :mod:`fewmm.bench.fusion`). Methods of
   :data:`JOINT_BLOCK_METHODS` (``mahalanobis-text``, only when named in ``--methods``) score
   ``[raw item features | bridge features]`` after ``fit_base`` on the base items.
4. **CoOp protocol** (``--protocol coop``; Zhou et al. 2022): a fixed test split of the novel
   classes (``test_per_class`` items per class, ``default_rng(0)``), K shots per class drawn
   from the rest with seeds 1, 2, 3 (:func:`fewmm.episodes.kshot_splits`), the whole test split
   scored; mean and spread (std) over the 3 seeds; the split indices are written to the results.

No hyper-parameter is chosen on query items or novel classes: every method runs with its fixed
defaults; the bridge with :class:`fewmm.aligned.BridgeConfig` 's. A method gets only the support
features and labels (``fit``), the class text of the task (constructor), and then the query
features (``predict_proba``); query labels are read only to score the predictions.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

from ..errors import FewmmError
from ..metrics import mean_ci, paired_difference
from .runner import Reporter, environment

TASK_DEFAULTS = {
    "digits-av": {"folds": ["A", "B"], "modalities": ["image", "audio"], "queries": 15, "test_per_class": 100},
    "esc50-text": {"folds": ["default"], "modalities": ["audio"], "queries": 3, "test_per_class": 3},
}
REFERENCE = "protonet"
COOP_SEEDS = (1, 2, 3)
#: Hyper-parameters chosen on VALIDATION episodes (``--tune``): method -> grid. Tip-Adapter's
#: reference code searches alpha and beta too (on its validation, for ImageNet its test, features).
TUNE_GRIDS = {"tip-adapter": {"alpha": (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0), "beta": (1.0, 5.5, 10.0)}}
#: Methods run again with the values chosen for another method (same hyper-parameter names).
TUNE_SHARED = {"tip-adapter-f": "tip-adapter"}
#: Methods scored on ``[raw item features | bridge features]`` (features ``"raw|bridge"``), with
#: ``joint_dim`` = the bridge width and ``fit_base`` on the base items' features and labels.
#: Known to this harness by name (not in :data:`fewmm.methods.METHODS`, whose module is left
#: unchanged here; ``fewmm.methods.mahalanobis_text.register_into(METHODS)`` adds it there).
JOINT_BLOCK_METHODS = ("mahalanobis-text",)


def _joint_block_class(name: str):
    from ..methods.mahalanobis_text import MahalanobisTextPrior

    return {"mahalanobis-text": MahalanobisTextPrior}[name]


def check_method_name(name: str) -> None:
    """Raise :class:`fewmm.registry.UnknownNameError` (a FewmmError, with close matches) unless
    ``name`` is a registered method or one of :data:`JOINT_BLOCK_METHODS`."""
    from .. import methods as M

    if name not in JOINT_BLOCK_METHODS:
        M.METHODS.get(name)


TRANSFER_FIELDS = [
    "task", "fold", "modality", "pair", "protocol", "method", "features", "ways", "shots", "queries", "episodes",
    "seeds", "accuracy", "ci95", "std", "paired_ref", "paired_delta", "paired_ci95", "notes",
]


# ------------------------------------------------------------------------------ scoring
def fit_predict(make_method, features, labels, support_idx, query_idx) -> np.ndarray:
    """Fit a fresh method on the support items, predict the query items.

    Parameters
    ----------
    make_method : callable () -> FewShotMethod
    features : torch.Tensor of shape (n_items, d)
    labels : indexable by an int64 index array (e.g. numpy.ndarray of shape (n_items,))
        Only ``labels[support_idx]`` is read here; query labels are never read.
    support_idx, query_idx : numpy.ndarray of int64, 1-d

    Returns
    -------
    numpy.ndarray of shape (len(query_idx),): the predicted labels.
    """
    m = make_method()
    m.fit(features[torch.as_tensor(support_idx)], np.asarray(labels[support_idx]))
    return m.predict(features[torch.as_tensor(query_idx)])


def evaluate_method_episodes(make_method, features, labels, episodes, return_predictions: bool = False):
    """Per-episode accuracy of a method scored with fit / predict on each episode's real labels.

    Parameters
    ----------
    make_method : callable () -> FewShotMethod
        A fresh method per episode (e.g. ``lambda: create("tip-adapter", class_text=ct)``).
    features : torch.Tensor of shape (n_items, d)
    labels : indexable of shape (n_items,)
        Global labels; query labels are read only after the episode's predictions are made.
    episodes : fewmm.episodes.Episodes

    Returns
    -------
    numpy.ndarray of shape (E,), float64: fraction correct per episode; with
    ``return_predictions`` also the predictions (E, N*Q).
    """
    accs, preds = [], []
    for e in range(len(episodes)):
        s = episodes.support[e].reshape(-1)
        q = episodes.query[e].reshape(-1)
        p = fit_predict(make_method, features, labels, s, q)
        accs.append(float(np.mean(p == np.asarray(labels[q]))))  # query labels: only now, to score
        preds.append(p)
    acc = np.asarray(accs, dtype=np.float64)
    return (acc, np.stack(preds)) if return_predictions else acc


def coop_test_split(labels: np.ndarray, classes, test_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed test split of ``classes``: ``test_per_class`` items per class drawn with
    ``default_rng(seed)``; the rest is the pool the shots are drawn from.

    Returns
    -------
    (pool, test) : sorted int64 item indices.

    Raises
    ------
    FewmmError
        A class with fewer than ``test_per_class + 1`` items.
    """
    rng = np.random.default_rng(int(seed))
    pool, test = [], []
    for c in sorted(int(c) for c in classes):
        members = np.flatnonzero(labels == c)
        if members.size < test_per_class + 1:
            raise FewmmError(f"CoOp split: class {c} has {members.size} items; {test_per_class} test items + at "
                             "least 1 shot needed")
        pick = rng.permutation(members)
        test.append(pick[:test_per_class])
        pool.append(pick[test_per_class:])
    return np.sort(np.concatenate(pool)).astype(np.int64), np.sort(np.concatenate(test)).astype(np.int64)


def coop_shots(labels: np.ndarray, pool: np.ndarray, classes, n_shot: int, seed: int) -> np.ndarray:
    """K shots per class drawn from ``pool`` with ``default_rng(seed)`` (classes in increasing
    order, ``rng.choice`` without replacement), sorted item indices of shape (C * K,).

    Raises
    ------
    FewmmError
        A class with fewer than ``n_shot`` pool items.
    """
    rng = np.random.default_rng(int(seed))
    out = []
    for c in sorted(int(c) for c in classes):
        members = pool[labels[pool] == c]
        if members.size < n_shot:
            raise FewmmError(f"CoOp protocol: {n_shot}-shot needs {n_shot} items of class {c} outside the test split, "
                             f"it has {members.size}")
        out.append(rng.choice(members, size=n_shot, replace=False))
    return np.sort(np.concatenate(out)).astype(np.int64)


def coop_episode(labels: np.ndarray, classes, shots: np.ndarray, test: np.ndarray):
    """One big "episode" (E=1) of the CoOp protocol, class-major, so heads scored on
    :class:`~fewmm.episodes.Episodes` (AM3) see exactly the same shots and test items.

    Raises
    ------
    FewmmError
        Classes with unequal shot or test counts (episodes must be rectangular).
    """
    from ..episodes import Episodes

    classes = np.asarray(sorted(int(c) for c in classes), dtype=np.int64)
    sup = [np.sort(shots[labels[shots] == c]) for c in classes]
    qry = [np.sort(test[labels[test] == c]) for c in classes]
    if len({s.size for s in sup}) != 1 or len({q.size for q in qry}) != 1:
        raise FewmmError("CoOp episode: every class needs the same number of shots and of test items")
    return Episodes(classes[None], np.stack(sup)[None], np.stack(qry)[None], 0)


# ------------------------------------------------------------------------------ the run
def _train_am3(task, modality, seed, queries, steps, quiet):
    from .. import heads as H
    from ..train import TrainConfig, train_head
    from .fusion import with_val_items_as_classes

    feats, _, base, val, _ = with_val_items_as_classes(task)
    f_h = feats.select_modalities((modality,))
    head = H.create("am3", f_h, seed=seed)
    cfg = TrainConfig(n_way=5, n_shot=(1, 5), n_query=min(queries, 15), steps=steps, eval_every=max(1, steps // 10),
                      val_episodes=200, val_shot=1, val_query=min(queries, 7 if task.name == "esc50-text" else 15),
                      patience=4, seed=seed, progress=not quiet)
    t0 = time.time()
    res = train_head(head, f_h, base, val, cfg)
    return res.head, {"best_val_acc": res.best_val_acc, "best_step": res.best_step, "steps": res.steps,
                      "seconds": round(time.time() - t0, 1), "config": cfg.to_dict()}


def joint_block_factory(name: str, raw, joint, labels, base_items, class_text, **params):
    """``() -> a fresh copy`` of a :data:`JOINT_BLOCK_METHODS` method whose ``fit_base`` was run
    once on the BASE items (``base_items``) of ``[raw | joint]``.

    Parameters
    ----------
    raw : torch.Tensor of shape (n_items, d_item)
    joint : torch.Tensor of shape (n_items, d_joint)
        The same items in the joint item-text space (bridge features).
    labels : numpy.ndarray of shape (n_items,)
        Only ``labels[base_items]`` is read.
    base_items : numpy.ndarray of int64
    class_text : mapping of label to (d_joint,) tensor

    Returns
    -------
    (factory, features) : the factory and the (n_items, d_item + d_joint) table it scores.
    """
    import copy

    feats = torch.cat([raw, joint], 1)
    m0 = _joint_block_class(name)(class_text=class_text, joint_dim=int(joint.shape[1]), **params)
    m0.check_params()
    m0.fit_base(feats[torch.as_tensor(base_items)], np.asarray(labels)[base_items])
    return (lambda: copy.deepcopy(m0)), feats


def method_factory(name: str, class_text=None, **params):
    """``() -> a fresh method``: registered ``name`` with ``params``, and ``class_text`` when the
    method uses class text."""
    from .. import methods as M

    M.METHODS.get(name)  # unknown names fail here
    if name in M.text_methods():
        return lambda: M.create(name, class_text=class_text, **params)
    return lambda: M.create(name, **params)


def tune_on_validation(task, features, class_text, name: str, grid: dict, ways: int, shots: int, queries: int,
                       episodes: int, seed: int) -> tuple[dict, list]:
    """Grid search of ``name`` 's hyper-parameters on episodes of the task's VALIDATION split
    (validation classes, or held-out items of base classes), never on novel classes.

    Returns
    -------
    best : dict
        The grid point with the highest mean accuracy (first one on ties, grid order).
    table : list of dict
        ``{"params": ..., "accuracy": percent}`` for every grid point.
    """
    import itertools

    ep = task.episodes("val", ways, shots, queries, episodes, seed=seed, allow_fewer_queries=True)
    keys = list(grid)
    table = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        acc = evaluate_method_episodes(method_factory(name, class_text, **params), features, task.labels, ep)
        table.append({"params": params, "accuracy": round(100 * float(acc.mean()), 3)})
    best = max(table, key=lambda r: r["accuracy"])  # max keeps the first of equal values
    return best["params"], table


def run(args) -> Path:
    from .. import methods as M
    from .. import tasks as T
    from ..aligned import BridgeConfig, train_bridge
    from ..heads import evaluate_head

    from ..encoders import resolve_device

    torch.set_num_threads(args.threads)
    dev = str(resolve_device(getattr(args, "device", "auto")))  # encoders only; methods and heads run on CPU
    spec = TASK_DEFAULTS[args.task]
    folds = args.folds or spec["folds"]
    modalities = args.modalities or spec["modalities"]
    queries = args.queries or spec["queries"]
    # default: ProtoNet + every registered class-text method; JOINT_BLOCK_METHODS only when named
    # (benchmarks/transfer_esc50_text_goal.toml), so the older suites' commands still make their results
    methods = args.methods or (["protonet"] + M.text_methods())
    if REFERENCE not in methods:
        methods = [REFERENCE] + methods
    protocols = ["episodes", "coop"] if args.protocol == "both" else [args.protocol]
    bridge_cfg = BridgeConfig(seed=args.seed)
    stem = args.name or f"transfer-{args.task}"
    header = {
        "experiment": "transfer from a joint item-text space (bridge learned on base classes)", "task": args.task,
        "command": args.command, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": args.seed,
        "episodes": args.episodes, "protocols": protocols, "environment": environment(), "folds": {},
        "pairs": {}, "zero_shot": {}, "am3_training": {}, "tuning": {}, "coop_splits": {}, "protocol": __doc__,
    }
    rep = Reporter(Path(args.out), stem, header, quiet=args.quiet, fields=TRANSFER_FIELDS)
    t_start = time.time()
    for fold in folds:
        kw = {} if fold == "default" else {"fold": fold}
        task = T.build(args.task, root=args.data_root, device=dev, **kw)
        header["folds"][fold] = {**task.splits_record(), "info": task.info}
        f = task.features
        labels = f.labels
        ct = f.class_text
        if ct is None:
            raise FewmmError(f"{args.task}: the task has no class text (built without a text encoder)")
        base_items = task.split_items("base")
        novel = task.novel_classes
        for mod in modalities:
            key = f"{fold}/{mod}"
            x = f.features[mod]
            pair = train_bridge(x[torch.as_tensor(base_items)], labels[base_items], ct, task.base_classes, bridge_cfg,
                                item_encoder=task.info["encoders"][mod], text_encoder=task.info["encoders"].get("class_text"))
            header["pairs"][key] = pair.info
            pair_name = f"bridge:{task.info['encoders'][mod]['encoder']}->{task.info['encoders']['class_text']['encoder']}"
            rep.say(f"[bridge] {args.task}/{key}: {pair.info['training']}")
            z = pair.items(x)
            class_text = pair.class_text(ct)
            tz = pair.texts(ct)
            # zero-shot over whole splits (no support at all)
            zs = {}
            for split in ("novel", "val"):
                if split == "val" and not len(task.val_classes):
                    continue
                cls = task.split_classes(split)
                items = task.split_items(split)
                pred = cls[(z[torch.as_tensor(items)] @ tz[torch.as_tensor(cls)].T).argmax(1).numpy()]
                acc = float(np.mean(pred == labels[items]))
                zs[split] = {"classes": len(cls), "items": int(items.size), "accuracy": round(100 * acc, 2),
                             "chance": round(100 / len(cls), 2)}
            header["zero_shot"][key] = zs
            rep.say(f"[zero-shot] {args.task}/{key}: {zs}")
            text_names = set(M.text_methods())
            factories = {n: method_factory(n, class_text) for n in methods if n not in JOINT_BLOCK_METHODS}
            xz = None
            for n in methods:
                if n in JOINT_BLOCK_METHODS:
                    factories[n], xz = joint_block_factory(n, x, z, labels, base_items, class_text)
            variants = [(n, n, "raw|bridge" if n in JOINT_BLOCK_METHODS else "bridge" if n in text_names else "raw")
                        for n in methods]
            if "protonet" in methods and not args.no_bridged_protonet:
                factories["protonet[bridge]"] = method_factory("protonet")
                variants.append(("protonet[bridge]", "protonet", "bridge"))
            if args.tune:
                chosen = {}
                for n, grid in TUNE_GRIDS.items():
                    if n in methods:
                        chosen[n], table = tune_on_validation(task, z, class_text, n, grid, args.ways, 1, queries,
                                                              args.tune_episodes, args.seed)
                        header["tuning"][f"{key}/{n}"] = {"chosen": chosen[n], "grid": table,
                                                          "episodes": f"{args.tune_episodes} {args.ways}-way 1-shot on the validation split, seed {args.seed}"}
                        rep.say(f"[tune] {args.task}/{key} {n}: {chosen[n]} on validation episodes")
                for n, src in TUNE_SHARED.items():
                    if n in methods and src in chosen:
                        chosen[n] = chosen[src]
                for n, params in chosen.items():
                    factories[f"{n}[val]"] = method_factory(n, class_text, **params)
                    variants.append((f"{n}[val]", f"{n}[val]", "bridge"))
            am3 = None
            if not args.no_am3:
                am3, rec = _train_am3(task, mod, args.seed, queries, args.am3_steps, args.quiet)
                header["am3_training"][key] = rec
                rep.say(f"[am3] {args.task}/{key}: best val acc {rec['best_val_acc']:.3f} at step {rec['best_step']}")
            for protocol in protocols:
                for k in args.shots:
                    if protocol == "episodes":
                        runs = [task.episodes("novel", args.ways, k, queries, args.episodes, seed=args.seed)]
                        ways, n_q = args.ways, queries
                    else:
                        pool, test = coop_test_split(labels, novel, spec["test_per_class"] if args.test_per_class is None
                                                     else args.test_per_class)
                        shots = {sd: coop_shots(labels, pool, novel, k, sd) for sd in COOP_SEEDS}
                        runs = [coop_episode(labels, novel, shots[sd], test) for sd in COOP_SEEDS]
                        header["coop_splits"][f"{key}/{k}-shot"] = {
                            "test_items": test.tolist(), "pool_items": pool.tolist(),
                            "shots_by_seed": {str(sd): v.tolist() for sd, v in shots.items()},
                            "rule": "test: default_rng(0) permutation per novel class, first test_per_class items; "
                                    "shots: coop_shots(labels, pool, novel, K, seed), seeds 1, 2, 3"}
                        ways, n_q = len(novel), int(runs[0].query.shape[2])
                    accs = {}
                    rows = []
                    todo = [(lbl, "method", name, kind) for lbl, name, kind in variants]
                    if am3 is not None:
                        todo.append(("am3", "head", "am3", "raw+class_text"))
                    for label, what, name, kind in todo:
                        t0 = time.time()
                        if what == "head":
                            fm = f.select_modalities((mod,))
                            a = np.concatenate([evaluate_head(am3, fm, ep) for ep in runs])
                        else:
                            feats = z if kind == "bridge" else xz if kind == "raw|bridge" else x
                            a = np.concatenate([evaluate_method_episodes(factories[name], feats, labels, ep) for ep in runs])
                        accs[label] = a
                        if protocol == "episodes":
                            est = mean_ci(a)
                            stats = {"accuracy": round(est.mean, 4), "ci95": round(est.ci95, 4), "std": round(est.std, 4),
                                     "episodes": len(a), "seeds": [args.seed]}
                        else:
                            stats = {"accuracy": round(100 * float(a.mean()), 4), "std": round(100 * float(a.std(ddof=1)), 4),
                                     "episodes": len(a), "seeds": list(COOP_SEEDS),
                                     "per_seed": [round(100 * float(v), 4) for v in a]}
                        rows.append({"task": args.task, "fold": fold, "modality": mod, "pair": pair_name,
                                     "protocol": protocol, "method": label, "features": kind, "ways": ways, "shots": k,
                                     "queries": n_q, **stats, "seconds": round(time.time() - t0, 2),
                                     "notes": "AM3 head trained on base-class episodes (item modality + class text)"
                                     if what == "head" else "hyper-parameters chosen on validation episodes"
                                     if label.endswith("[val]") else ""})
                    for r in rows:
                        if r["method"] != REFERENCE and protocol == "episodes":
                            d = paired_difference(accs[r["method"]], accs[REFERENCE])
                            r.update(paired_ref=REFERENCE, paired_delta=round(d.mean, 4), paired_ci95=round(d.ci95, 4))
                        rep.rows.append(r)
                        if not args.quiet:
                            spread = f"± {r['ci95']:.2f}" if protocol == "episodes" else f"std {r['std']:.2f}"
                            delta = f"{r['paired_delta']:+6.2f} ± {r['paired_ci95']:.2f}" if "paired_delta" in r else ""
                            print(f"{args.task:<10} {fold:<7} {mod:<6} {protocol:<8} {k}-shot {r['method']:<17} "
                                  f"{r['accuracy']:6.2f} {spread}  {delta}", flush=True)
                    rep.flush()
    header["wall_seconds"] = round(time.time() - t_start, 1)
    rep.flush(finished=True)
    rep.say(f"wrote {rep.json_path} and {rep.csv_path}")
    return rep.json_path


def markdown_table(doc: dict) -> str:
    """A README block from a results document of :func:`run`: one row per (fold/modality,
    method), columns episode 1/5-shot (mean ± 95% CI, paired delta to ProtoNet) and CoOp
    1/5-shot (mean ± std over seeds 1/2/3), then the zero-shot accuracies and the command."""
    rows = doc["results"]
    cols = [(p, k) for p in ("episodes", "coop") for k in sorted({r["shots"] for r in rows if r["protocol"] == p})]
    groups = list(dict.fromkeys((r["fold"], r["modality"]) for r in rows))
    head = ["fold / modality", "method"] + [f"{'episodes' if p == 'episodes' else 'CoOp'} {k}-shot" for p, k in cols]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fold, mod in groups:
        methods = list(dict.fromkeys(r["method"] for r in rows if (r["fold"], r["modality"]) == (fold, mod)))
        for m in methods:
            cells = []
            for p, k in cols:
                r = next((r for r in rows if (r["fold"], r["modality"], r["method"], r["protocol"], r["shots"]) ==
                          (fold, mod, m, p, k)), None)
                if r is None:
                    cells.append("")
                elif p == "episodes":
                    d = f" ({r['paired_delta']:+.2f} ± {r['paired_ci95']:.2f})" if r.get("paired_delta") is not None else " (ref)"
                    cells.append(f"{r['accuracy']:.2f} ± {r['ci95']:.2f}{d}")
                else:
                    cells.append(f"{r['accuracy']:.2f} ± {r['std']:.2f}")
            out.append(f"| {fold} / {mod} | {m} | " + " | ".join(cells) + " |")
    out.append("")
    ep = next((r for r in rows if r["protocol"] == "episodes"), None)
    co = next((r for r in rows if r["protocol"] == "coop"), None)
    if ep:
        out.append(f"Episodes: novel classes, {ep['ways']}-way, {ep['queries']} queries per class, {ep['episodes']} "
                   f"episodes (seed {doc['seed']}); accuracy % ± 95% CI, in brackets the paired difference to "
                   f"`{REFERENCE}` on raw item features (same episodes).")
    if co:
        out.append(f"CoOp protocol: all {co['ways']} novel classes, K shots per class (seeds 1, 2, 3), the fixed test "
                   f"split ({co['queries']} items per class) scored; mean ± std over the 3 seeds.")
    zs = "; ".join(f"{k}: novel {v['novel']['accuracy']:.2f}% ({v['novel']['classes']}-way, chance {v['novel']['chance']:.0f}%)"
                   + (f", validation {v['val']['accuracy']:.2f}%" if "val" in v else "") for k, v in doc["zero_shot"].items())
    out.append(f"Zero-shot through the bridge over all novel classes at once: {zs}.")
    tun = "; ".join(f"{k}: {v['chosen']}" for k, v in doc.get("tuning", {}).items())
    if tun:
        out.append(f"`[val]` rows: alpha/beta chosen on validation episodes ({tun}).")
    out.append(f"Command: `{doc['command']}`; wall time {doc.get('wall_seconds', '?')} s.")
    return "\n".join(out) + "\n"


def write_readme_block(json_path, readme) -> bool:
    """Replace the block between ``<!-- results:<stem> -->`` and ``<!-- /results:<stem> -->`` in
    ``readme`` with :func:`markdown_table` of ``json_path``. Returns False when the markers are absent.

    Raises
    ------
    FewmmError
        The results file is missing or unfinished.
    """
    import json

    path = Path(json_path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FewmmError(f"results file {path} does not exist") from None
    if not doc.get("finished"):
        raise FewmmError(f"{path}: the run did not finish; refusing to write its table")
    stem = path.stem
    text = Path(readme).read_text()
    a, b = f"<!-- results:{stem} -->", f"<!-- /results:{stem} -->"
    if a not in text or b not in text:
        return False
    pre, rest = text.split(a, 1)
    _, post = rest.split(b, 1)
    Path(readme).write_text(pre + a + "\n" + markdown_table(doc) + b + post)
    return True


CONFIG_KEYS = {"task", "folds", "modalities", "methods", "protocol", "ways", "shots", "queries", "episodes", "seed",
               "test_per_class", "am3_steps", "no_am3", "tune"}


def _apply_config(a, path: str) -> None:
    """Fill unset flags from a TOML suite (keys as the flags, with underscores)."""
    try:
        cfg = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FewmmError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise FewmmError(f"config file {path} is not valid TOML: {e}") from None
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise FewmmError(f"{path}: unknown keys {sorted(unknown)}; expected some of {sorted(CONFIG_KEYS)}")
    for k, v in cfg.items():
        if getattr(a, k, None) in (None, False):
            setattr(a, k, ",".join(map(str, v)) if isinstance(v, list) else v)


def build_parser() -> argparse.ArgumentParser:
    from ..clihelp import HelpFormatter, add_device_argument

    p = argparse.ArgumentParser(prog="python -m fewmm.bench.transfer", description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--config", help="TOML suite (keys as the flags); flags given override it (default: none)")
    p.add_argument("--task", choices=sorted(TASK_DEFAULTS), help="task with class text (required, here or in --config; default: none)")
    p.add_argument("--folds", help="comma-separated folds (default: every fold of the task; digits-av: A,B)")
    p.add_argument("--modalities", help="comma-separated item modalities (default: every item modality; digits-av: image,audio)")
    p.add_argument("--methods", help="comma-separated method names (default: protonet + every class-text method)")
    p.add_argument("--protocol", choices=["episodes", "coop", "both"], help="evaluation protocol(s) (default: both)")
    p.add_argument("--ways", help="N of the episode protocol (default: 5)")
    p.add_argument("--shots", help="K, comma-separated (default: 1,5)")
    p.add_argument("--queries", help="queries per class in episodes (default: digits-av 15, esc50-text 3)")
    p.add_argument("--episodes", help="episodes per setting (default: 600)")
    p.add_argument("--test-per-class", dest="test_per_class",
                   help="CoOp protocol: fixed test items per novel class (default: digits-av 100, esc50-text 3)")
    p.add_argument("--seed", help="episode / bridge / head seed (default: 0)")
    p.add_argument("--am3-steps", dest="am3_steps", help="AM3 training steps (default: 400, as fewmm.bench.fusion)")
    p.add_argument("--no-am3", dest="no_am3", action="store_true", help="skip the AM3 head")
    p.add_argument("--tune", action="store_true",
                   help=f"also run {', '.join(TUNE_GRIDS)} (+ {', '.join(TUNE_SHARED)}) with hyper-parameters chosen on validation episodes")
    p.add_argument("--tune-episodes", dest="tune_episodes", type=int, default=200, help="validation episodes per grid point")
    p.add_argument("--no-bridged-protonet", action="store_true", help="skip ProtoNet on the bridge features")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    add_device_argument(p)
    p.add_argument("--data-root", help="data folder (default: $FEWMM_DATA, then ~/.cache/fewmm/data)")
    p.add_argument("--out", default="results", help="folder for the JSON + CSV results")
    p.add_argument("--name", help="file stem of the results (default: transfer-<task>)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--report", metavar="JSON", help="print the markdown table of a results file, no run (default: none)")
    p.add_argument("--readme", help="with --report: write the table between its results markers in this file (default: none)")
    return p


def _unique(p, values, flag: str) -> None:
    """argparse error (exit 2) naming ``flag`` when ``values`` repeats an entry."""
    from ..clihelp import check_unique

    try:
        check_unique(values, flag)
    except ValueError as e:
        p.error(str(e))


def _main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = build_parser()
    a = p.parse_args(argv)
    if a.report:
        try:
            if a.readme:
                ok = write_readme_block(a.report, a.readme)
                print(f"{'updated' if ok else 'no results markers for'} {Path(a.report).stem} in {a.readme}")
            else:
                import json

                from .report import print_to_pipe

                print_to_pipe(markdown_table(json.loads(Path(a.report).read_text())))
        except (FewmmError, OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        if a.config:
            _apply_config(a, a.config)
        if not a.task or a.task not in TASK_DEFAULTS:
            p.error(f"--task is required (one of {sorted(TASK_DEFAULTS)}), on the command line or in --config")
        a.folds = [s.strip() for s in a.folds.split(",")] if a.folds else None
        a.modalities = [s.strip() for s in a.modalities.split(",")] if a.modalities else None
        a.methods = [s.strip() for s in a.methods.split(",")] if a.methods else None
        if a.methods:  # names checked before any task is built (features embedded, bridge trained)
            _unique(p, a.methods, "--methods")
            for name in a.methods:
                check_method_name(name)  # UnknownNameError (a FewmmError) naming the method, with suggestions
        a.protocol = a.protocol or "both"
        a.shots = [int(s) for s in str(a.shots or "1,5").split(",")]
        for k, dflt, lo in (("ways", 5, 2), ("queries", None, 1), ("episodes", 600, 1), ("seed", 0, 0),
                            ("test_per_class", None, 1), ("am3_steps", 400, 1)):
            v = getattr(a, k)
            v = dflt if v is None else int(v)
            if v is not None and v < lo:
                p.error(f"--{k.replace('_', '-')} must be >= {lo}, got {v}")
            setattr(a, k, v)
        if min(a.shots) < 1:
            p.error(f"--shots must be >= 1, got {a.shots}")
        _unique(p, a.shots, "--shots")
    except FewmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        p.error(f"expected integers: {e}")
    a.command = "python -m fewmm.bench.transfer " + shlex.join(argv)
    try:
        run(a)
    except FewmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    """The command line (see ``--help``). SIGTERM stops it like Ctrl-C: one line, exit 130, with
    what was kept (:func:`fewmm.clihelp.interrupted_message`)."""
    from ..clihelp import run_interruptible

    return run_interruptible(_main, argv, 'the rows measured so far (if any) are in the output folder')


if __name__ == "__main__":
    sys.exit(main())
