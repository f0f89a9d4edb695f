"""Command line of the benchmark harness.

Examples
--------
The default suite (every data set found; scikit-learn's digits always)::

    python -m fewmm.bench

One data set, several methods and shots::

    python -m fewmm.bench --dataset omniglot:evaluation --encoder efficientnet-lite2 \\
        --methods protonet,simpleshot --ways 5 --shots 1,5 --episodes 600

A TOML config (same keys as the flags; see ``fewmm/bench/suites/default.toml``)::

    python -m fewmm.bench --config benchmarks/omniglot.toml

One slice of the grid per job (here slice 0 of 4), then the merge (see :mod:`fewmm.bench.shard`)::

    python -m fewmm.bench --config benchmarks/omniglot.toml --name grid --shard 0/4
    python -m fewmm.bench.merge results/grid-shard*-of-4.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..clihelp import HelpFormatter, add_device_argument, interrupted_message
from ..errors import FewmmError
from ..plugins import add_plugin_argument, import_plugins
from .runner import DEFAULT_ENCODER, DEFAULT_METHODS, SUITES_DIR, RunSpec, Suite, parse_ints, parse_strs, load_suite, parse_dataset, run_suite
from .shard import shard_stem, shard_type


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fewmm.bench",
        description="Few-shot accuracy (mean and 95% CI over episodes) of methods on frozen-encoder "
        "features of real data sets. With no flags, runs the default suite on every data set found.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", help="TOML suite file (flags given too override its top-level keys); default: "
                   "fewmm/bench/suites/default.toml when no --dataset is given")
    p.add_argument("--dataset", help="data set[:split], comma-separated (e.g. omniglot:evaluation,banking77:test); "
                   "your own data: manifest:PATH[:all|base|val|novel] (a CSV/JSONL manifest); default: the default suite's data sets")
    p.add_argument("--base", help="base split of the --dataset run(s), name[:split] (e.g. omniglot:background): meta-trained "
                   "methods (maml, anil, metasgd, protonet-head) learn on it, SimpleShot centres on it; default with a "
                   "meta-trained method: omniglot:background for omniglot:evaluation, else a seeded class-disjoint split "
                   "of the data set's classes (half base, half novel; recorded in the results); task:esc50-text or "
                   "task:digits-av[:A|B]: that task's fixed base / novel classes (its validation classes left out)")
    p.add_argument("--encoder", help="encoder name(s), comma-separated (default: one per modality: "
                   + ", ".join(f"{m} {e}" for m, e in DEFAULT_ENCODER.items()) + ")")
    p.add_argument("--methods", help="method names, comma-separated; the first is the reference of the paired "
                   f"differences (default: {','.join(DEFAULT_METHODS)})")
    p.add_argument("--ways", help="N, comma-separated allowed (default 5)")
    p.add_argument("--shots", help="K, comma-separated allowed (default 1,5)")
    p.add_argument("--queries", type=int, help="Q query items per class (default 15)")
    p.add_argument("--episodes", type=int, help="episodes per setting (default 600)")
    p.add_argument("--seed", type=int, help="episode seed (default 0)")
    p.add_argument("--text-encoder", dest="text_encoder",
                   help="class-text methods: text encoder of the bridge trained on the base classes (default minilm-l6; "
                   "hf-clip-*/hf-clap-* item encoders use their own text tower)")
    add_device_argument(p)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="encoder arithmetic: fp32, or autocast to bf16/fp16 (torch encoders; recorded in the results "
                   "and the feature-cache key; see README, sharded feature extraction)")
    p.add_argument("--data-root", help="data folder (default: $FEWMM_DATA, then ~/.cache/fewmm/data)")
    p.add_argument("--out", default="results", help="folder for the JSON + CSV results")
    p.add_argument("--name", help="file stem of the results (default <suite>-<timestamp>)")
    p.add_argument("--cache-dir", help="feature cache folder (default $FEWMM_CACHE or ~/.cache/fewmm/features)")
    p.add_argument("--shard", type=shard_type, metavar="I/N",
                   help="run only slice I of N (0-based) of the grid's cells, e.g. one Slurm array task each; "
                   "results go to <name>-shardI-of-N.{json,csv}; merge the N files with python -m fewmm.bench.merge "
                   "(default: the whole grid)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--list", action="store_true", help="list data sets, encoders and methods, then exit")
    add_plugin_argument(p)
    return p


def suite_from_args(a: argparse.Namespace) -> Suite:
    if a.config:
        suite = load_suite(a.config)
    elif a.dataset:
        suite = Suite(name="bench", runs=[], methods=list(DEFAULT_METHODS), ways=[5], shots=[1, 5])
    else:
        suite = load_suite(SUITES_DIR / "default.toml")
    if a.dataset:
        encs = parse_strs(a.encoder) if a.encoder else []
        suite.runs = [RunSpec(*parse_dataset(d), encoders=list(encs), base=a.base) for d in parse_strs(a.dataset)]
        suite.name = suite.name if a.config else "bench"
    elif a.base:
        raise FewmmError("--base needs --dataset (a suite file names each run's base = \"name[:split]\")")
    if a.encoder and not a.dataset:
        for r in suite.runs:
            r.encoders = parse_strs(a.encoder)
    if a.methods:
        suite.methods = parse_strs(a.methods)
    if a.ways:
        suite.ways = parse_ints(a.ways, "--ways")
    if min(suite.ways) < 2:
        raise FewmmError(f"--ways must be >= 2 (a 1-way episode is always 100% correct), got {suite.ways}")
    if a.shots:
        suite.shots = parse_ints(a.shots, "--shots")
    if a.queries is not None:
        if a.seed is not None and a.seed < 0:
            raise FewmmError(f"--seed must be >= 0, got {a.seed}")
        if a.queries < 1:
            raise FewmmError(f"--queries must be >= 1, got {a.queries}")
        suite.queries = a.queries
        for r in suite.runs:
            r.queries = None
    if a.episodes is not None:
        if a.episodes < 1:
            raise FewmmError(f"--episodes must be >= 1, got {a.episodes}")
        suite.episodes = a.episodes
    if a.text_encoder:
        suite.text_encoder = a.text_encoder
    if a.seed is not None:
        if a.seed < 0:
            raise FewmmError(f"--seed must be >= 0, got {a.seed}")
        suite.seed = a.seed
    from ..clihelp import check_unique

    lists = [("--methods", suite.methods), ("--ways", suite.ways), ("--shots", suite.shots)]
    if a.dataset:
        lists += [("--dataset", parse_strs(a.dataset)), ("--encoder", parse_strs(a.encoder) if a.encoder else [])]
    for flag, values in lists:  # a repeated value would run twice and be written twice into the results
        try:
            check_unique(values, flag + (" (or the suite's " + flag[2:] + ")" if a.config else ""))
        except ValueError as e:
            raise FewmmError(str(e)) from None
    return suite


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser().parse_args(argv)
    try:
        import_plugins(a.plugin)  # before --list and before any name is checked
    except FewmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.list:
        from .. import data, encoders, methods

        print("data sets:", ", ".join(data.list_datasets()), "+ manifest:PATH[:split] (your own CSV/JSONL manifest)")
        print("encoders: ", ", ".join(encoders.list_encoders()))
        print("methods:  ", ", ".join(methods.list_methods()))
        print("  class text (need a data set with class text; an aligned pair or a bridge on base classes):",
              ", ".join(methods.text_methods()))
        return 0
    try:
        suite = suite_from_args(a)
        run_suite(
            suite,
            data_root=a.data_root,
            device=a.device,
            out_dir=Path(a.out),
            stem=shard_stem(a.name, suite.name, a.shard) if a.shard else a.name,
            cache_dir=a.cache_dir,
            command="python -m fewmm.bench " + " ".join(shlex.quote(x) for x in argv),
            quiet=a.quiet,
            shard=a.shard,
            precision=a.precision,
        )
    except FewmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(interrupted_message(e), file=sys.stderr)
        return 130
    return 0


def main(argv=None) -> int:
    """The command line (see ``--help``). SIGTERM stops it like Ctrl-C: one line, exit 130, with
    what was kept (:func:`fewmm.clihelp.interrupted_message`)."""
    from ..clihelp import run_interruptible

    return run_interruptible(_main, argv, 'the rows measured so far (if any) are in the output folder')
