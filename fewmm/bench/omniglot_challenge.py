"""The Omniglot one-shot classification challenge (Lake, Salakhutdinov & Tenenbaum, Science 2015):
20 official runs of 20-way within-alphabet one-shot classification (400 test items), with models
trained on ``images_background`` only.

Two steps::

    # 1. train on the background characters (validation: held-out background characters)
    python -m fewmm.bench.omniglot_challenge train --method protonet --episodes 1000
    python -m fewmm.bench.omniglot_challenge train --method maml --episodes 1000
    # 2. score the 20 runs: modified Hausdorff distance baseline, ProtoNet, MAML
    python -m fewmm.bench.omniglot_challenge evaluate

No model or checkpoint is selected on the runs: ``train`` keeps the checkpoint best on the
validation characters (:func:`fewmm.backbones.omniglot28.background_split`); ``evaluate`` reads the
runs once, with that checkpoint.

Protocol
--------
* Training images: :func:`fewmm.backbones.omniglot28.load_omniglot28` (105x105 -> 28x28, PIL box
  filter, strokes = 1), background characters only (ProtoNet: Snell et al.'s 60-way 5-shot
  5-query episodes, Adam 1e-3 halved every 2,000; MAML: Finn et al.'s 20-way settings, 16 tasks of
  1 shot + 1 query, inner lr 0.1, 5 inner steps, first order, Adam 1e-3), 868 training characters x 4 rotations
  (0/90/180/270 degrees as new classes, as Snell et al. 2017); 96 validation characters without
  rotations, validated on 20-way 1-shot episodes (the challenge's shape).
* Run images: each 105x105 PNG goes through the same :func:`fewmm.backbones.omniglot28.to28`.
* ProtoNet (Snell et al. 2017): each test item goes to the class whose single training image's
  embedding is nearest (squared euclidean).
* MAML (Finn et al. 2017, first order): the 20-way head is adapted on the 20 training images
  (``test_inner_steps`` steps), then the 20 test items are classified together (batch-norm batch
  statistics, as at meta-training).
* Modified Hausdorff distance (Dubuisson & Jain 1994) on the 105x105 inked pixels, centred, exactly
  as the official demo (``python/one-shot-classification/demo_classification.py`` of
  github.com/brendenlake/omniglot, which reports 38.8% error; here 155 of 400 = 38.75%, run by run
  the same errors): :func:`inked_points`, :func:`modified_hausdorff`, :func:`mhd_predict`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_CHECKPOINTS = {"protonet": "results/_scratch/omniglot-challenge-protonet", "maml": "results/_scratch/omniglot-challenge-maml20"}


def background_images(data_root=None, cache=None, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Training classes (868 characters x 4 rotations, 20, 28, 28) and validation classes (96, 20,
    28, 28) uint8 from ``images_background`` only, and a description of the split."""
    from ..backbones.omniglot28 import CHALLENGE_SPLIT_SEED, background_split, load_omniglot28, rotated_classes

    images, names = load_omniglot28(data_root, cache, progress=progress)
    split = background_split(names)
    for s in ("train", "val"):
        if not all(names[i].startswith("background:") for i in split[s]):  # pragma: no cover - guarded by background_split
            raise ValueError("the challenge split must hold background characters only")
    train = rotated_classes(images, split["train"])
    val = rotated_classes(images, split["val"], rotations=(0,))
    info = {"training_set": "images_background only (964 characters, 30 alphabets); images_evaluation never used",
            "characters": {"train": len(split["train"]), "val": len(split["val"])},
            "classes": {"train": int(train.shape[0]), "val": int(val.shape[0])},
            "split": f"background characters sorted by name, shuffled with numpy default_rng({CHALLENGE_SPLIT_SEED}); "
                     f"the first {len(split['val'])} validation, the rest training",
            "rotations": "0/90/180/270 degrees as new classes in training; none in validation",
            "images": "28x28, PIL box filter from 105x105, strokes = 1, background = 0"}
    return train, val, info


def train(a) -> int:
    from ..backbones import create
    from ..backbones.episodic import EpisodicConfig, train_protonet
    from ..backbones.maml import MAMLConfig, MAMLNet, train_maml

    torch.set_num_threads(a.threads)
    tr, val, info = background_images(a.data_root, a.cache, progress=not a.quiet)
    ckpt = Path(a.checkpoints or DEFAULT_CHECKPOINTS[a.method])
    if not a.resume and (ckpt / "last.json").exists():
        if not a.overwrite:
            print(f"error: {ckpt} already holds a run (last.json): continue it with --resume or start afresh with --overwrite", file=sys.stderr)
            return 2
        for stale in ("last", "best"):
            for suffix in (".json", ".safetensors"):
                (ckpt / f"{stale}{suffix}").unlink(missing_ok=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "split.json").write_text(json.dumps({**info, "command": "python -m fewmm.bench.omniglot_challenge " + shlex.join(a.argv)}, indent=2) + "\n")
    torch.manual_seed(a.seed)  # the initialisation
    if a.method == "protonet":
        cfg = EpisodicConfig(n_way=60, n_shot=5, n_query=5, episodes=a.episodes, lr=1e-3, decay_every=2000, eval_every=a.eval_every,
                             val_way=20, val_shot=1, val_query=5, val_episodes=a.val_episodes, seed=a.seed, progress=not a.quiet)
        res = train_protonet(create("conv4"), tr, val, cfg, checkpoint_dir=ckpt, resume=a.resume)
        best, best_at, done = res.best_val_acc, res.best_episode, res.episodes
    else:
        cfg = MAMLConfig(n_way=20, n_shot=1, n_query=1, inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=16,
                         meta_steps=a.episodes, lr=1e-3, first_order=True, eval_every=a.eval_every, val_query=5,
                         val_episodes=a.val_episodes, seed=a.seed, progress=not a.quiet)
        res = train_maml(MAMLNet(create("conv4"), 64, 20), tr, val, cfg, checkpoint_dir=ckpt, resume=a.resume)
        best, best_at, done = res["best_val_acc"], res["best_step"], res["meta_steps"]
    print(f"[train {a.method}] best validation 20-way 1-shot accuracy {best:.4f} at {best_at}; {done} done; checkpoints in {ckpt}")
    return 0


# ------------------------------------------------------------------ modified Hausdorff distance


def inked_points(image: np.ndarray) -> np.ndarray:
    """Coordinates of the inked pixels of one drawing, centred on their mean, as the official demo's
    ``LoadImgAsPoints`` (github.com/brendenlake/omniglot,
    ``python/one-shot-classification/demo_classification.py``): ink = pixels equal to 0.

    Parameters
    ----------
    image : numpy.ndarray of shape (H, W), uint8, 0 = ink, 255 = paper (:func:`fewmm.data.read_image`)

    Returns
    -------
    numpy.ndarray of shape (n, 2), float64: (row, column) minus their mean.

    Raises
    ------
    ValueError
        Not a 2-d array, or no inked pixel.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a greyscale (H, W) drawing, got shape {img.shape}")
    pts = np.argwhere(img == 0).astype(np.float64)  # row-major, as numpy's nonzero
    if not len(pts):
        raise ValueError("the drawing has no inked pixel (no pixel equal to 0)")
    return pts - pts.mean(axis=0)


def modified_hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Modified Hausdorff distance (Dubuisson & Jain 1994, "A modified Hausdorff distance for
    object matching", ICPR): ``max(mean_i min_j |a_i - b_j|, mean_j min_i |a_i - b_j|)``.

    Parameters
    ----------
    a, b : numpy.ndarray of shapes (n, d) and (m, d), n, m >= 1

    Returns
    -------
    float (units of the coordinates, here pixels).

    Raises
    ------
    ValueError
        Empty or mismatched point sets.
    """
    from scipy.spatial.distance import cdist

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(f"expected two non-empty point sets (n, d) and (m, d), got shapes {a.shape} and {b.shape}")
    d = cdist(a, b)
    return float(max(d.min(axis=1).mean(), d.min(axis=0).mean()))


def mhd_predict(run) -> np.ndarray:
    """Predicted training index (20,) of each test item of ``run`` (a
    :class:`fewmm.data.OneShotRun`): the training image at the smallest modified Hausdorff
    distance (the first on ties, as ``numpy.argmin`` in the official demo)."""
    tr = [inked_points(x) for x in run.training]
    te = [inked_points(x) for x in run.test]
    cost = np.array([[modified_hausdorff(q, s) for s in tr] for q in te])
    return cost.argmin(axis=1)


# ------------------------------------------------------------------ trained models on the runs


def run_inputs(images: np.ndarray) -> torch.Tensor:
    """(n, 105, 105) uint8 run drawings (0 = ink) -> (n, 28, 28) uint8 (255 = stroke), the
    training preprocessing (:func:`fewmm.backbones.omniglot28.to28`)."""
    from ..backbones.omniglot28 import to28

    return torch.from_numpy(np.stack([to28(x) for x in images]))


def protonet_predict(backbone: torch.nn.Module, run) -> np.ndarray:
    """Nearest training image in embedding space (squared euclidean; one shot = the prototype)
    for each test item -> (20,) int64. Eval mode (batch-norm running statistics)."""
    from ..backbones.episodic import embed_images

    s = embed_images(backbone, run_inputs(run.training))
    q = embed_images(backbone, run_inputs(run.test))
    return torch.cdist(q, s).argmin(1).numpy()


def maml_predict(net, run, inner_lr: float, steps: int) -> np.ndarray:
    """MAML: adapt the 20-way net on the run's 20 training images (label = training index,
    ``steps`` first-order steps of ``inner_lr`` on every parameter, :class:`fewmm.meta.MAML` as at
    meta-training), then classify the 20 test items together (batch statistics, as at
    meta-training) -> (20,) int64. ``net`` itself is not changed.

    Raises
    ------
    ValueError
        The net's classifier does not have one output per training image of the run.
    """
    from ..backbones.episodic import to_input
    from ..engine.learner import ItemReshape
    from ..meta import MAML

    if net.classifier.out_features != len(run.training):
        raise ValueError(f"the MAML head has {net.classifier.out_features} outputs; the run is {len(run.training)}-way")
    xs, xq = to_input(run_inputs(run.training)), to_input(run_inputs(run.test))
    maml = MAML(ItemReshape(net, xs.shape[1:]), inner_lr=inner_lr, inner_steps=int(steps), first_order=True, variant="maml",
                feature_norm=None)
    # one task: rows (1, n, prod(item shape)), the item shape restored inside ItemReshape
    params = maml.adapt(xs.reshape(1, len(xs), -1), torch.arange(len(xs)).reshape(1, -1), differentiable=False)
    with torch.no_grad():
        return maml.predict_logits(params, xq.reshape(1, len(xq), -1))[0].argmax(-1).cpu().numpy()


#: Lake, Salakhutdinov & Tenenbaum (2019), "The Omniglot challenge: a 3-year progress report",
#: Current Opinion in Behavioral Sciences 29, Table 1: error rates (%) on the 20 runs. Quoted from
#: the paper, not measured here.
PUBLISHED = [("humans", 4.5), ("Bayesian program learning", 3.3), ("prototypical networks", 13.7)]


def _checkpoint_info(ckpt: Path) -> dict:
    best = json.loads((ckpt / "best.json").read_text())
    last = json.loads((ckpt / "last.json").read_text())
    done = last.get("episode", last.get("meta_step"))
    info = {"checkpoint": str(ckpt), "config": {k: v for k, v in best["config"].items() if k not in ("progress", "episodes", "meta_steps")},
            "trained": done, "best_on_validation_at": best.get("best_episode", best.get("best_step")),
            "best_val_acc_20way_1shot": best["best_val_acc"], "history": last["history"],
            "seconds": last["history"][-1]["seconds"] if last["history"] else None}
    split = ckpt / "split.json"
    if split.is_file():
        info["split"] = json.loads(split.read_text())
    return info


def evaluate(a) -> int:
    from ..backbones import create
    from ..backbones.episodic import load_backbone
    from ..backbones.maml import MAMLNet
    from ..data import load_omniglot_runs
    from ..encoders.base import file_sha256
    from ..metrics import mean_ci
    from .runner import environment

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()
    runs = load_omniglot_runs(a.data_root)
    _, _, split_info = background_images(a.data_root, a.cache, progress=False)
    methods: dict[str, dict] = {}
    wanted = [m for m in a.methods.split(",") if m]
    bad = [m for m in wanted if m not in ("mhd", "protonet", "maml")]
    if bad or not wanted:
        print(f"error: --methods {a.methods!r}: expected a comma-separated subset of mhd,protonet,maml", file=sys.stderr)
        return 2
    preds = {}
    if "mhd" in wanted:
        preds["modified Hausdorff distance"] = [mhd_predict(r) for r in runs]
        methods["modified Hausdorff distance"] = {"what": "Dubuisson & Jain 1994 on the 105x105 inked pixels, centred; the official "
                                                          "demo's preprocessing and rule (no training)"}
    for method, folder in (("protonet", a.protonet), ("maml", a.maml)):
        if method not in wanted:
            continue
        ckpt = Path(folder)
        if not (ckpt / "best.json").is_file() or not (ckpt / "last.json").is_file():
            print(f"[skip] {method}: no checkpoint in {ckpt} (train it first: python -m fewmm.bench.omniglot_challenge train "
                  f"--method {method} ...)", file=sys.stderr)
            continue
        info = _checkpoint_info(ckpt)
        info["weights_sha256"] = file_sha256(ckpt / "best.safetensors")
        if method == "protonet":
            net = load_backbone(ckpt / "best", create("conv4"))
            name = "protonet-conv4"
            preds[name] = [protonet_predict(net, r) for r in runs]
            info["test"] = "each test item to the nearest training image's embedding (squared euclidean), eval-mode batch norm"
        else:
            cfg = info["config"]
            net = load_backbone(ckpt / "best", MAMLNet(create("conv4"), 64, cfg["n_way"]))
            name = "maml-first-order-conv4" if cfg.get("first_order", True) else "maml-second-order-conv4"
            preds[name] = [maml_predict(net, r, cfg["inner_lr"], cfg["test_inner_steps"]) for r in runs]
            info["test"] = (f"{cfg['test_inner_steps']} inner steps of {cfg['inner_lr']} on the run's 20 training images, then the 20 test "
                            "items classified together (batch statistics)")
        methods[name] = {"what": info.pop("test"), "training": info}
    rows = []
    for name, p in preds.items():
        wrong = [int((pr != r.answers).sum()) for pr, r in zip(p, runs)]
        est = mean_ci(np.asarray(wrong) / 20.0)  # over the 20 runs, as over episodes
        methods[name].update({"errors": int(sum(wrong)), "items": 20 * len(runs), "error_pct": 100.0 * sum(wrong) / (20 * len(runs)),
                              "ci95_over_runs": round(est.ci95, 2),
                              "per_run_errors": wrong, "per_run_error_pct": [100.0 * w / 20 for w in wrong]})
        rows += [{"method": name, "run": r.name, "errors": w, "items": 20, "error_pct": 100.0 * w / 20} for w, r in zip(wrong, runs)]
        rows.append({"method": name, "run": "all", "errors": sum(wrong), "items": 20 * len(runs), "error_pct": methods[name]["error_pct"]})
    doc = {"experiment": "omniglot one-shot challenge (Lake et al. 2015): 20 runs of 20-way within-alphabet one-shot classification",
           "command": "python -m fewmm.bench.omniglot_challenge " + shlex.join(a.argv),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(),
           "data": {"runs": "omniglot/all_runs.zip (official, github.com/brendenlake/omniglot python/one-shot-classification)",
                    "items": 20 * len(runs)},
           "training_split": "images_background only (964 characters, 30 alphabets); validation on held-out background characters; "
                             "no model or checkpoint selected on the runs; the runs' evaluation alphabets never seen in training",
           "training_split_details": split_info,
           "training_note": a.training_note,
           "methods": methods,
           "published": {"source": "Lake, Salakhutdinov & Tenenbaum (2019), The Omniglot challenge: a 3-year progress report, "
                                   "Current Opinion in Behavioral Sciences 29, Table 1 (quoted from the paper, not measured here)",
                         "error_pct": dict(PUBLISHED)},
           "wall_seconds": round(time.time() - t0, 1)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    jpath = out / f"{a.name}.json"
    jpath.write_text(json.dumps(doc, indent=2) + "\n")
    import csv

    with open(out / f"{a.name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["method", "run", "errors", "items", "error_pct"])
        w.writeheader()
        w.writerows(rows)
    for name, m in methods.items():
        print(f"{name:32s} error {m['error_pct']:5.2f}% ({m['errors']}/{m['items']})")
    if a.readme:
        path = Path(a.readme)
        from .report import update_block

        path.write_text(update_block(path.read_text(), "omniglot-challenge", challenge_table(doc)))
        print(f"rewrote the omniglot-challenge block of {path}")
    print(f"wrote {jpath} and {out / (a.name + '.csv')}")
    return 0


def challenge_table(doc: dict) -> str:
    """The README table (Markdown) of a results document written by ``evaluate``."""
    ms = doc["methods"]
    lines = ["| method | error (%) over 400 test items ± 95% CI over the 20 runs | errors | per-run error (%), run01..run20 |",
             "|---|---|---|---|"]
    for name, m in ms.items():
        lines.append(f"| {name} | {m['error_pct']:.2f} ± {m['ci95_over_runs']:.2f} | {m['errors']}/{m['items']} | "
                     f"{' '.join(f'{e:g}' for e in m['per_run_error_pct'])} |")
    for name, e in doc["published"]["error_pct"].items():
        lines.append(f"| *{name}, published (Lake et al. 2019, Table 1; quoted)* | *{e}* | | |")
    notes = []
    for name, m in ms.items():
        t = m.get("training")
        if t:
            c = t["config"]
            unit = "episodes of 60-way 5-shot 5-query" if "n_query" in c and c.get("n_way") == 60 else \
                f"meta-steps of {c.get('meta_batch')} {c.get('n_way')}-way 1-shot tasks (first order, inner lr {c.get('inner_lr')}, " \
                f"{c.get('inner_steps')} inner steps, {c.get('test_inner_steps')} at test)"
            notes.append(f"{name}: {t['trained']} {unit}, best on validation (20-way 1-shot on held-out background characters, "
                         f"{100 * t['best_val_acc_20way_1shot']:.2f}%) at {t['best_on_validation_at']}; training "
                         f"{t['seconds'] / 60:.1f} min on the CPU")
    note = f" {doc['training_note']}" if doc.get("training_note") else ""
    return ("\n".join(lines) + "\n\nTraining split: " + doc["training_split"] + ". " + "; ".join(notes) + "." + note +
            f" Command: `{doc['command']}`.\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fewmm.bench.omniglot_challenge", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="data root holding omniglot/ (default: FEWMM_DATA or the user cache)")
    p.add_argument("--cache", default=None, help="feature cache folder (the 28x28 images are cached there)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train ProtoNet or MAML (20-way) on images_background")
    t.add_argument("--method", choices=("protonet", "maml"), required=True)
    t.add_argument("--episodes", type=int, required=True, help="training episodes (ProtoNet) or meta-steps (MAML)")
    t.add_argument("--eval-every", type=int, default=100)
    t.add_argument("--val-episodes", type=int, default=100)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoints", default=None, help="checkpoint folder (default results/_scratch/omniglot-challenge-<method>)")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--overwrite", action="store_true")
    e = sub.add_parser("evaluate", help="score the 20 runs: modified Hausdorff distance, and the trained ProtoNet / MAML")
    e.add_argument("--protonet", default=DEFAULT_CHECKPOINTS["protonet"], help="ProtoNet checkpoint folder (best.* is used)")
    e.add_argument("--maml", default=DEFAULT_CHECKPOINTS["maml"], help="MAML checkpoint folder (best.* is used)")
    e.add_argument("--methods", default="mhd,protonet,maml", help="which rows (comma-separated subset of mhd,protonet,maml)")
    e.add_argument("--out", default="results")
    e.add_argument("--name", default="omniglot-challenge")
    e.add_argument("--training-note", default=None, help="how the checkpoints were trained (budget, threads), stored in the results")
    e.add_argument("--readme", default=None, help="Markdown file whose <!-- results:omniglot-challenge --> block to rewrite")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser().parse_args(argv)
    a.argv = argv
    if a.cmd == "train":
        return train(a)
    return evaluate(a)


if __name__ == "__main__":
    sys.exit(main())
