"""Backbones trained from scratch (Omniglot, FSDD, ESC-50) with prototypical episodes or MAML, against frozen encoders:
``python -m fewmm.bench.backbone``.

    python -m fewmm.bench.backbone --config benchmarks/omniglot_protonet.toml
    python -m fewmm.bench.backbone --episodes 300 --way 20 --out /tmp/smoke     # a short run

Protocol: :mod:`fewmm.backbones.omniglot28` (28x28, 1,028 / 172 / 423 characters, rotations as
classes at training and test time) and :mod:`fewmm.backbones.episodic` (ProtoNet loss, Adam,
step decay, best checkpoint on the validation classes). Test: 1,000 episodes for each of 5-way
1-shot, 5-way 5-shot, 20-way 1-shot and 20-way 5-shot (15 queries per class), the same episodes for
every method (sampled from the test labels and the seed): the trained Conv-4, the Conv-4 at its
random initialisation, and frozen pretrained encoders on the same 28x28 test images. Published
numbers are printed beside them.

Writes ``<out>/<name>.json`` (+ ``.csv``, written after every row) and ``<out>/<name>-val.png``
(validation accuracy against training episodes).
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..clihelp import HelpFormatter, add_device_argument, seed_type
from ..encoders.base import resolve_device
from ..errors import FewmmError
from ..metrics import mean_ci, paired_difference
from ..plugins import add_plugin_argument, import_plugins
from .runner import Reporter, environment

#: Snell et al. 2017 (ProtoNet, Table 1) and Finn et al. 2017 (MAML, Table 1), Omniglot, percent.
PUBLISHED = {
    "protonet": {(5, 1): 98.8, (5, 5): 99.7, (20, 1): 96.0, (20, 5): 98.9},
    "maml": {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9},
}
SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
#: (way, shot, queries per class) of the audio tasks' test episodes (ESC-50 has 8 clips per class).
AUDIO_SETTINGS = {"fsdd-digits": ((5, 1, 15), (5, 5, 15)), "esc50": ((5, 1, 7), (5, 5, 3))}
FIELDS = ["method", "ways", "shots", "queries", "episodes", "accuracy", "ci95", "published", "paired_ref", "paired_delta",
          "paired_ci95", "seed"]


def _frozen_features(encoder: str, modality: str, payloads: list, name: str, cache) -> torch.Tensor:
    """Frozen encoder features of test payloads (class-major, as the episodes index them), through
    the feature cache (keyed by ``name``, the item ids and the payloads' content)."""
    import fewmm.encoders as E
    from ..cache import embed_table
    from ..data.table import ItemTable

    n = len(payloads)
    table = ItemTable(name=name, ids=[str(i) for i in range(n)], labels=np.zeros(n, dtype=np.int64), class_names=["all"],
                      modalities={modality: list(payloads)})
    return embed_table(table, E.create(encoder), cache=cache, progress=True).features


def _omniglot_payloads(images: torch.Tensor) -> tuple[list, str]:
    """(C, K, 28, 28) uint8 test images (255 = stroke) as black strokes on white paper, like the
    original scans, and a table name naming their content."""
    flat = (255 - images.reshape(-1, *images.shape[-2:])).numpy()
    return list(flat), f"omniglot28-test-{hashlib.sha256(flat.tobytes()).hexdigest()[:12]}"


def _omniglot_splits(a) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training, validation and test images (classes x 20 x 28 x 28, uint8) of the written-down split,
    rotations as classes."""
    from ..backbones.omniglot28 import character_split, load_omniglot28, rotated_classes

    images, names = load_omniglot28(a.data_root, a.cache, progress=not a.quiet)
    split = character_split(names)
    return tuple(rotated_classes(images, split[s]) for s in ("train", "val", "test"))


def _run_maml(a) -> Path:
    """MAML (first- or second-order) on Omniglot: one model per training way; tested on the
    settings of that way (its classifier has ``way`` outputs)."""
    from ..backbones import create
    from ..backbones.maml import MAMLConfig, MAMLNet, evaluate_maml, train_maml

    train, val, test = _omniglot_splits(a)
    cfg = MAMLConfig(n_way=a.way, n_shot=a.shot, n_query=a.query, inner_lr=a.inner_lr, inner_steps=a.inner_steps,
                     test_inner_steps=a.test_inner_steps, meta_batch=a.meta_batch, meta_steps=a.episodes, lr=a.lr,
                     first_order=not a.second_order, eval_every=a.eval_every, val_query=a.test_query, val_episodes=a.val_episodes,
                     seed=a.seed, device=a.device, amp=a.amp, progress=not a.quiet)
    header = {"experiment": "omniglot backbone from scratch", "method": "maml", "command": "python -m fewmm.bench.backbone " + shlex.join(a.argv),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": a.seed, "environment": environment(),
              "protocol": {"split": "as omniglot-protonet (fewmm/backbones/omniglot28.py)", "batch_norm": "batch statistics (transductive), as Finn et al.",
                           "order": "second" if a.second_order else "first",
                           "test": f"{a.test_episodes} episodes per setting, {a.test_query} queries per class, seed {a.seed}, the same "
                                   f"episodes as omniglot-protonet; {a.test_inner_steps} inner steps of {a.inner_lr} on each support set"},
              "backbone": {"name": a.backbone}, "training": {"config": asdict(cfg)}}
    rep = Reporter(Path(a.out), a.name, header, fields=FIELDS)
    rep.check_writable()
    torch.manual_seed(a.seed)
    net = MAMLNet(create(a.backbone), 64, a.way)
    t0 = time.time()
    res = train_maml(net, train, val, cfg, checkpoint_dir=a.checkpoints or None, resume=bool(a.checkpoints) and a.resume,
                     log=(lambda s: None) if a.quiet else None)
    header["training"].update({"history": res.history, "best_val_acc": res.best_val_acc, "best_episode": res.best_step,
                               "episodes": res.steps, "seconds": round(res.seconds, 1)})
    rep.say(f"[train] best validation {a.way}-way {a.shot}-shot accuracy {res.best_val_acc:.4f} at meta-step {res.best_step}; "
            f"{res.steps} meta-steps, this run {res.seconds:.0f} s")
    rep.flush(force=True)  # the training history is kept even if testing fails
    ref = f"maml-{'second' if a.second_order else 'first'}-order-{a.backbone}"
    for ways, shots in ((a.way, 1), (a.way, 5)):  # the head is tied to the training way
        acc = evaluate_maml(net, test, ways, shots, a.test_query, a.test_episodes, cfg.inner_lr, cfg.test_inner_steps, seed=a.seed,
                            amp=a.amp)
        est = mean_ci(acc)
        rep.rows.append({"method": ref, "ways": ways, "shots": shots, "queries": a.test_query, "episodes": len(acc),
                         "accuracy": round(est.mean, 4), "ci95": round(est.ci95, 4), "published": PUBLISHED["maml"].get((ways, shots)), "seed": a.seed})
        pub = PUBLISHED["maml"].get((ways, shots))
        rep.say(f"{ways}-way {shots}-shot {ref} {est.mean:6.2f} ± {est.ci95:.2f}" + (f"   (published MAML {pub})" if pub else ""))
        rep.flush()
    header["wall_seconds"] = round(time.time() - t0, 1)
    rep.flush(finished=True)
    if res.history:
        plot_validation(header["training"]["history"], Path(a.out) / f"{a.name}-val.png", a)
    rep.say(f"wrote {rep.json_path}")
    return rep.json_path


def run(a) -> Path:
    torch.set_num_threads(a.threads)
    if a.method == "maml":
        if a.task != "omniglot":
            raise ValueError("--method maml: only --task omniglot")
        return _run_maml(a)
    if a.task == "omniglot":
        return _run_omniglot(a)
    return _run_audio(a)


def _manifest_task(a) -> tuple[dict, list]:
    """The tensors of ``--task manifest:PATH`` and its test settings (way, shot, queries): up to
    5-way (the novel classes there are), 1 and 5 shots where the items per class allow a query."""
    from ..backbones.manifest import manifest_task

    modality = {"conv4": "image", "audio-conv4": "audio"}.get(a.backbone)
    fractions = tuple(float(x) for x in a.split_fractions.split(",")) if a.split_fractions else None
    task = manifest_task(a.task[len("manifest:"):], modality=modality, seed=a.seed, split_seed=a.split_seed,
                         **({"split_fractions": fractions} if fractions else {}), progress=not a.quiet)
    a.backbone = a.backbone or ("audio-conv4" if task["modality"] == "audio" else "conv4")
    if a.baselines == ["efficientnet-lite2", "pixels"] and task["modality"] == "audio":
        a.baselines = ["logmel-stats"]  # the default frozen baselines are image encoders
    c, k = task["test"].shape[:2]
    settings = [(min(5, c), s, min(a.test_query, k - s)) for s in (1, 5) if k - s >= 1]
    if not settings:
        raise FewmmError(f"{a.task}: the novel classes have {k} items each; a test episode needs at least 2")
    return task, settings


def _run_audio(a) -> Path:
    from ..backbones import create
    from ..backbones.audio import audio_task
    from ..backbones.episodic import EpisodicConfig, embed_images, train_protonet

    if a.task.startswith("manifest:"):
        task, settings = _manifest_task(a)
    else:
        task = audio_task(a.task, a.data_root, seed=a.seed, progress=not a.quiet)
        settings = AUDIO_SETTINGS[a.task]
    train, val, test = task["train"], task["val"], task["test"]
    modality = task.get("modality", "audio")
    cfg = EpisodicConfig(n_way=a.way, n_shot=a.shot, n_query=a.query, episodes=a.episodes, lr=a.lr, decay_every=a.decay_every,
                         eval_every=a.eval_every, val_way=min(5, val.shape[0]), val_shot=1, val_query=min(a.test_query, val.shape[1] - 1),
                         val_episodes=a.val_episodes, seed=a.seed, device=a.device, amp=a.amp, progress=not a.quiet)
    header = {"experiment": f"{modality} backbone from scratch", "task": a.task,
              "command": "python -m fewmm.bench.backbone " + shlex.join(a.argv), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "seed": a.seed, "environment": environment(), "protocol": task["info"],
              "backbone": {"name": a.backbone}, "training": {"config": cfg.to_dict()}}
    rep = Reporter(Path(a.out), a.name, header, fields=FIELDS)
    rep.check_writable()
    torch.manual_seed(a.seed)
    net = create(a.backbone)
    init_state = {k: v.clone() for k, v in net.state_dict().items()}
    t0 = time.time()
    res = train_protonet(net, train, val, cfg, checkpoint_dir=a.checkpoints or None, resume=bool(a.checkpoints) and a.resume,
                         log=None if not a.quiet else (lambda s: None))
    header["training"].update({"history": res.history, "best_val_acc": res.best_val_acc, "best_episode": res.best_step,
                               "episodes": res.steps, "seconds": round(time.time() - t0, 1)})
    rep.say(f"[train] best validation accuracy {res.best_val_acc:.4f} at episode {res.best_step}")
    rep.flush(force=True)  # the training history is kept even if testing fails
    init = create(a.backbone)
    init.load_state_dict(init_state)
    feats = {f"protonet-{a.backbone}": embed_images(net, test, a.device, batch_size=128, amp=a.amp),
             f"{a.backbone}-random-init": embed_images(init, test, a.device, batch_size=128)}
    for enc in a.baselines:
        feats[f"frozen {enc}"] = _frozen_features(enc, modality, task["test_payloads"],
                                                  f"{task['test_table_name']}-{a.task.split(':')[0]}-test-seed{a.seed}", a.cache)
    _score(rep, feats, test, settings, a, ref=f"protonet-{a.backbone}", published=None)
    header["wall_seconds"] = round(time.time() - t0, 1)
    rep.flush(finished=True)
    if res.history:
        plot_validation(res.history, Path(a.out) / f"{a.name}-val.png", a)
    rep.say(f"wrote {rep.json_path}")
    return rep.json_path


def _score(rep, feats: dict, test, settings, a, ref: str, published) -> None:
    from ..backbones.episodic import evaluate_backbone

    for ways, shots, queries in settings:
        accs = {m: evaluate_backbone(None, test, ways, shots, queries, a.test_episodes, seed=a.seed, features=f) for m, f in feats.items()}
        for m, acc in accs.items():
            est = mean_ci(acc)
            row = {"method": m, "ways": ways, "shots": shots, "queries": queries, "episodes": len(acc), "accuracy": round(est.mean, 4),
                   "ci95": round(est.ci95, 4), "published": published[(ways, shots)] if published and m == ref else None, "seed": a.seed}
            if m != ref:
                d = paired_difference(acc, accs[ref])
                row.update(paired_ref=ref, paired_delta=round(d.mean, 4), paired_ci95=round(d.ci95, 4))
            rep.rows.append(row)
            rep.say(f"{ways}-way {shots}-shot {m:<28s} {est.mean:6.2f} ± {est.ci95:.2f}"
                    + (f"   (published ProtoNet {row['published']})" if row["published"] else ""))
        rep.flush()


def _run_omniglot(a) -> Path:
    from ..backbones import create
    from ..backbones.episodic import EpisodicConfig, train_protonet
    from ..backbones.omniglot28 import N_TEST, N_TRAIN, N_VAL, SPLIT_SEED

    train, val, test = _omniglot_splits(a)
    cfg = EpisodicConfig(n_way=a.way, n_shot=a.shot, n_query=a.query, episodes=a.episodes, lr=a.lr, decay_every=a.decay_every,
                         eval_every=a.eval_every, val_episodes=a.val_episodes, seed=a.seed, device=a.device, amp=a.amp,
                         progress=not a.quiet)
    header = {
        "experiment": "omniglot backbone from scratch", "command": "python -m fewmm.bench.backbone " + shlex.join(a.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": a.seed, "environment": environment(),
        "protocol": {
            "images": "28x28, PIL box filter from 105x105, strokes = 1, background = 0",
            "split": f"characters sorted by name, shuffled with numpy default_rng({SPLIT_SEED}): {N_TRAIN} train / {N_VAL} val / "
                     f"{N_TEST} test (Vinyals sizes, not Vinyals' exact lists)",
            "rotations": "0/90/180/270 degrees as new classes in train, val and test (as Snell et al.)",
            "classes": {"train": int(train.shape[0]), "val": int(val.shape[0]), "test": int(test.shape[0])},
            "test": f"{a.test_episodes} episodes per setting, {a.test_query} queries per class, seed {a.seed}, same episodes for every method",
            "published": "ProtoNet: Snell et al. 2017 Table 1; MAML: Finn et al. 2017 Table 1",
        },
        "backbone": {"name": a.backbone}, "training": {"config": cfg.to_dict()},
    }
    rep = Reporter(Path(a.out), a.name, header, fields=FIELDS)
    rep.check_writable()
    torch.manual_seed(a.seed)  # the initialisation
    net = create(a.backbone)
    header["backbone"]["config"] = getattr(net, "config", None)
    header["backbone"]["parameters"] = int(sum(p.numel() for p in net.parameters()))
    init_state = {k: v.clone() for k, v in net.state_dict().items()}
    t0 = time.time()
    res = train_protonet(net, train, val, cfg, checkpoint_dir=a.checkpoints or None, resume=bool(a.checkpoints) and a.resume,
                         log=None if not a.quiet else (lambda s: None))
    header["training"].update({"history": res.history, "best_val_acc": res.best_val_acc, "best_episode": res.best_step,
                               "episodes": res.steps, "seconds": round(time.time() - t0, 1)})
    rep.say(f"[train] best validation 5-way 1-shot accuracy {res.best_val_acc:.4f} at episode {res.best_step}; "
            f"{res.steps} episodes in {time.time() - t0:.0f} s")
    rep.flush(force=True)  # the training history is kept even if testing fails

    feats = {"protonet-conv4": None}
    init = create(a.backbone)
    init.load_state_dict(init_state)
    from ..backbones.episodic import embed_images

    feats["protonet-conv4"] = embed_images(net, test, a.device, amp=a.amp)
    feats["conv4-random-init"] = embed_images(init, test, a.device)
    payloads, name = _omniglot_payloads(test) if a.baselines else (None, None)
    for enc in a.baselines:
        feats[f"frozen {enc}"] = _frozen_features(enc, "image", payloads, name, a.cache)
    _score(rep, feats, test, [(w, k, a.test_query) for w, k in SETTINGS], a, ref="protonet-conv4", published=PUBLISHED["protonet"])
    header["wall_seconds"] = round(time.time() - t0, 1)
    rep.flush(finished=True)
    if res.history:
        plot_validation(res.history, Path(a.out) / f"{a.name}-val.png", a)
    rep.say(f"wrote {rep.json_path}")
    return rep.json_path


def plot_validation(history: list[dict], path: Path, a) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h.get("step", h.get("episode")) for h in history]  # engine history ("step"); runs before it: "episode"
    maml = a.method == "maml"
    val = f"{a.way}-way {a.shot}-shot" if maml else "5-way 1-shot"
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(ep, [100 * h["val_acc"] for h in history], marker="o", label=f"validation {val}")
    ax.plot(ep, [100 * h["train_acc"] for h in history], marker=".", alpha=0.6,
            label=f"training {a.way}-way {a.shot}-shot queries" + (" (after adaptation)" if maml else ""))
    ax.set_xlabel(f"meta-steps ({a.meta_batch} tasks each)" if maml else "training episodes")
    ax.set_ylabel("accuracy (%)")
    what = f"{'second' if a.second_order else 'first'}-order MAML" if maml else "ProtoNet"
    ax.set_title(f"{a.backbone} {what} on {a.task} ({a.way}-way {a.shot}-shot {'tasks' if maml else 'episodes'})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fewmm.bench.backbone", description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--config", help="TOML file with any of the options below (flags override it; default: none)")
    p.add_argument("--task", default="omniglot", help="few-shot task: omniglot, fsdd-digits, esc50, or manifest:PATH (your own "
                   "manifest's audio with audio-conv4, or its images at 28x28 with conv4; its split column, else a seeded "
                   "class-disjoint split)")
    p.add_argument("--split-seed", type=seed_type, default=0, help="manifest tasks without a split column: seed of the class split")
    p.add_argument("--split-fractions", default=None, metavar="BASE,VAL,NOVEL",
                   help="manifest tasks without a split column: fractions of the classes (default 0.6,0.2,0.2)")
    p.add_argument("--backbone", default=None, help="backbone to train (default conv4 for omniglot, audio-conv4 for the audio tasks)")
    p.add_argument("--method", choices=("protonet", "maml"), default="protonet",
                   help="training method; maml: --episodes counts meta-steps of --meta-batch tasks of --way/--shot/--query")
    p.add_argument("--inner-lr", type=float, default=0.4, help="MAML inner learning rate (Finn et al.: 0.4)")
    p.add_argument("--inner-steps", type=int, default=1, help="MAML inner steps at meta-training")
    p.add_argument("--test-inner-steps", type=int, default=3, help="MAML inner steps at test")
    p.add_argument("--meta-batch", type=int, default=32, help="MAML tasks per meta-step")
    p.add_argument("--second-order", action="store_true", help="MAML: second order (default first order)")
    p.add_argument("--way", type=int, default=60, help="training way (Snell et al.: 60; with --method maml the default is 5)")
    p.add_argument("--shot", type=int, default=5, help="training shots per class (with --method maml the default is 1)")
    p.add_argument("--query", type=int, default=5, help="training queries per class (with --method maml the default is 1)")
    p.add_argument("--episodes", type=int, default=2000, help="training episodes (MAML: meta-steps)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (outer loop for MAML)")
    p.add_argument("--decay-every", type=int, default=2000, help="halve the learning rate every N episodes")
    p.add_argument("--eval-every", type=int, default=200, help="validate every N episodes (with --method maml the default is 250)")
    p.add_argument("--val-episodes", type=int, default=300, help="validation episodes per check (with --method maml the default is 100)")
    p.add_argument("--test-episodes", type=int, default=1000, help="test episodes per setting")
    p.add_argument("--test-query", type=int, default=15, help="test queries per class")
    p.add_argument("--baselines", default="efficientnet-lite2,pixels", help="frozen encoders on the same test episodes ('' for none)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the split, training and test episodes")
    add_device_argument(p)
    p.add_argument("--amp", choices=("bf16",), default=None, help="bfloat16 autocast (GPU; default: float32)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--checkpoints", default="", help="folder for last/best checkpoints, resumable with --resume (default '': none)")
    p.add_argument("--resume", action="store_true", help="continue the run in --checkpoints exactly where it stopped")
    p.add_argument("--data-root", help="data folder (default: $FEWMM_DATA, then ~/.cache/fewmm/data)")
    p.add_argument("--cache", help="feature cache folder (default $FEWMM_CACHE or ~/.cache/fewmm/features)")
    p.add_argument("--out", default="results", help="folder for the JSON + CSV results")
    p.add_argument("--name", default=None, help="results file stem (default <task>-<method>, e.g. omniglot-protonet; MAML other than "
                   "5-way 1-shot first order adds them: omniglot-maml-20way-1shot-first-order)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--overwrite", action="store_true", help="train afresh into a --checkpoints folder that already holds a run")
    add_plugin_argument(p)  # e.g. an encoder of your own for --baselines
    return p


def _main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = build_parser()
    pre, _ = p.parse_known_args(argv)
    if pre.method == "maml":  # Finn et al.'s 5-way Omniglot task shape instead of ProtoNet's 60-way episodes
        p.set_defaults(way=5, shot=1, query=1, eval_every=250, val_episodes=100)
    if pre.config:
        import tomllib

        try:
            conf = tomllib.loads(Path(pre.config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            p.error(f"--config {pre.config}: {e}")
        known = {a.dest for a in p._actions}
        bad = [k for k in conf if k.replace("-", "_") not in known]
        if bad:
            p.error(f"--config {pre.config}: unknown keys {bad}")
        t = conf.get("task")
        if isinstance(t, str) and t.startswith("manifest:") and not Path(t[len("manifest:"):]).expanduser().is_absolute():
            conf["task"] = "manifest:" + str(Path(pre.config).parent / t[len("manifest:"):])  # relative to the config file
        p.set_defaults(**{k.replace("-", "_"): (",".join(v) if isinstance(v, list) else v) for k, v in conf.items()})
    a = p.parse_args(argv)
    a.argv = argv
    manifest = a.task.startswith("manifest:")
    if not manifest and a.task not in ("omniglot", "fsdd-digits", "esc50"):
        p.error(f"--task {a.task!r}: expected omniglot, fsdd-digits, esc50 or manifest:PATH")
    if manifest and not Path(a.task[len("manifest:"):]).expanduser().is_file():
        p.error(f"--task {a.task}: manifest {a.task[len('manifest:'):]} not found")
    if manifest and a.split_fractions:
        try:
            [float(x) for x in a.split_fractions.split(",")]
        except ValueError:
            p.error(f"--split-fractions: expected three comma-separated numbers (base,val,novel), got {a.split_fractions!r}")
    if not manifest:
        a.backbone = a.backbone or ("conv4" if a.task == "omniglot" else "audio-conv4")
    a.baselines = [b for b in a.baselines.split(",") if b]
    if a.name is None:
        a.name = f"{'manifest-' + Path(a.task[len('manifest:'):]).stem if manifest else a.task}-{a.method}"
        if a.method == "maml":  # one results file per MAML model: way, shot and order in the name
            a.name += "" if (a.way, a.shot, a.second_order) == (5, 1, False) else f"-{a.way}way-{a.shot}shot-{'second' if a.second_order else 'first'}-order"
    for name in ("way", "shot", "query", "episodes", "decay_every", "eval_every", "val_episodes", "test_episodes", "test_query", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.way < 2:
        p.error("--way must be >= 2")
    for name in ("seed", "split_seed"):  # a --config value bypasses seed_type
        if not isinstance(getattr(a, name), int) or getattr(a, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be an integer >= 0, got {getattr(a, name)!r}")
    if a.task == "omniglot":  # 20 drawings per character: check before any data is loaded or any training is done
        if a.shot + a.query > 20:
            p.error(f"--shot {a.shot} + --query {a.query} training images per class: Omniglot has 20 per character")
        if 5 + a.test_query > 20:
            p.error(f"--test-query {a.test_query}: the 5-shot test episodes need 5 + {a.test_query} images per class; Omniglot has 20")
    if a.resume and not a.checkpoints:
        p.error("--resume needs --checkpoints (the folder of the run to continue)")
    if a.checkpoints and not a.resume and not a.overwrite and (Path(a.checkpoints) / "last.json").exists():
        p.error(f"--checkpoints {a.checkpoints} already holds a run (last.json): continue it with --resume, "
                "or train afresh over it with --overwrite")
    if a.checkpoints and a.overwrite and not a.resume:
        for stale in ("last", "best"):
            for suffix in (".json", ".safetensors"):
                (Path(a.checkpoints) / f"{stale}{suffix}").unlink(missing_ok=True)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {a.device}: no CUDA device is available here (use --device auto or cpu)")
    a.device = str(resolve_device(a.device))
    try:
        import_plugins(a.plugin)
        run(a)
    except (FewmmError, ValueError, ArithmeticError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    """The command line (see ``--help``). SIGTERM stops it like Ctrl-C: one line, exit 130, with
    what was kept (:func:`fewmm.clihelp.interrupted_message`)."""
    from ..clihelp import run_interruptible

    return run_interruptible(_main, argv, 'the training history and rows measured so far (if any) are in the output folder, and with --checkpoints the run continues with --resume')


if __name__ == "__main__":
    sys.exit(main())
