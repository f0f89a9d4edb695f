"""``python -m fewmm.adapt``: few-shot adapters from the command line.

Commands::

    python -m fewmm.adapt fit --manifest train.csv --out my_adapter/ \\
        [--encoder audio=whisper-tiny-en] [--head avg-proto] [--head-param C=1.0] [--device auto]
    python -m fewmm.adapt predict my_adapter/ FILE... [--manifest test.csv] [--format table|json|csv] [--output OUT]
    python -m fewmm.adapt eval my_adapter/ --manifest test.csv [--confusion-png confusion.png] [--json OUT]

``fit`` reads a manifest (CSV/TSV/JSONL with a ``label`` column and ``image`` / ``audio`` /
``text`` columns, see :mod:`fewmm.data.manifest`). ``predict`` prints, per item, the predicted
label, the probability of every class and the weight the head gave each modality. ``eval`` prints
the accuracy with its 95% Wilson interval over the test items and the confusion matrix.

Exit codes: 0 success; 2 bad input (unreadable files, all listed; bad manifest; unknown names; a
damaged or mismatched adapter), with a one-paragraph message and no traceback.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np


def _kv(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {s!r}")
    k, v = s.split("=", 1)
    if not k.strip() or not v.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {s!r}")
    return k.strip(), v.strip()


def _value(v: str):
    """A --head-param value: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def build_parser() -> argparse.ArgumentParser:
    from ..clihelp import HelpFormatter, add_device_argument

    p = argparse.ArgumentParser(prog="python -m fewmm.adapt", description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", formatter_class=HelpFormatter, help="fit an adapter on a labelled manifest and save it")
    f.add_argument("--manifest", required=True, help="training manifest (.csv/.tsv/.jsonl) with a label column")
    f.add_argument("--out", required=True, help="folder to save the adapter to")
    f.add_argument("--encoder", action="append", type=_kv, default=[], metavar="MODALITY=NAME",
                   help="encoder per modality, repeatable (default: efficientnet-lite2 / whisper-tiny-en / minilm-l6 "
                        "for the modalities the manifest has). Image: efficientnet-lite2, pixels, openclip-image, "
                        "hf-clip-image; audio: whisper-tiny-en, birdnet, logmel-stats, hf-clap-audio; text: minilm-l6, "
                        "openclip-text, hf-clip-text, hf-clap-text")
    f.add_argument("--head", default="avg-proto",
                   help="fusion head (avg-proto, concat, single:<modality>) or method for one modality "
                        "(protonet, protonet-cosine, linear-probe, knn, simpleshot); default avg-proto")
    f.add_argument("--head-param", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="head / method hyper-parameter, repeatable (values parsed as JSON when possible)")
    add_device_argument(f)
    f.add_argument("--batch-size", type=int, default=32, help="encoder batch size")

    pr = sub.add_parser("predict", formatter_class=HelpFormatter, help="predict labels of files (or of a manifest's items)")
    pr.add_argument("adapter", help="adapter folder (from `fit`)")
    pr.add_argument("files", nargs="*", help="image / audio / .txt files")
    pr.add_argument("--manifest", help="manifest of items to predict (its label column is optional; default: none, "
                    "the files given)")
    pr.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    pr.add_argument("--output", help="write there (default: stdout)")
    add_device_argument(pr)

    ev = sub.add_parser("eval", formatter_class=HelpFormatter, help="accuracy (95%% CI) and confusion matrix on a labelled manifest")
    ev.add_argument("adapter", help="adapter folder (from `fit`)")
    ev.add_argument("--manifest", required=True, help="labelled test manifest (.csv/.tsv/.jsonl)")
    ev.add_argument("--confusion-png", help="also draw the confusion matrix to this PNG (matplotlib; default: no PNG)")
    ev.add_argument("--json", help="write accuracy, interval, confusion matrix and predictions to this JSON file (default: none)")
    add_device_argument(ev)
    from ..plugins import add_plugin_argument

    for sp in (f, pr, ev):
        add_plugin_argument(sp)
    return p


def _check_output(path, flag: str, suffixes=None, inputs=()) -> None:
    """Refuse, before any work, an output path that cannot be written or would destroy an input."""
    from ..data.io import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
    from ..errors import DataError

    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{flag} {path}: is a directory; give a file name")
    if not p.parent.is_dir():
        raise DataError(f"{flag} {path}: the folder {p.parent} does not exist")
    if suffixes and p.suffix.lower() not in suffixes:
        raise DataError(f"{flag} {path}: expected a {' or '.join(suffixes)} file name")
    if not suffixes and p.suffix.lower() in IMAGE_EXTENSIONS + AUDIO_EXTENSIONS:
        raise DataError(f"{flag} {path}: refusing to write predictions over an image/audio file")
    rp = p.resolve()
    if any(Path(x).resolve() == rp for x in inputs):
        raise DataError(f"{flag} {path}: is one of the inputs; refusing to overwrite it")


def _check_manifest(path, flag: str = "--manifest") -> None:
    from ..adapter import MANIFEST_EXTENSIONS
    from ..errors import DataError

    if Path(path).suffix.lower() not in MANIFEST_EXTENSIONS:
        raise DataError(f"{flag} {path}: expected a manifest file ({', '.join(MANIFEST_EXTENSIONS)})")


def _fit(a) -> int:
    from ..adapter import Adapter
    from ..errors import DataError

    encoders = dict(a.encoder) or None
    _check_manifest(a.manifest)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {a.out}: exists and is not a folder; an adapter is saved as a folder")
    params = {k: _value(v) for k, v in a.head_param} or None
    t0 = time.perf_counter()
    ad = Adapter(encoders=encoders, head=a.head, head_params=params, device=a.device, batch_size=a.batch_size).fit(a.manifest)
    out = ad.save(a.out)
    print(f"fitted {ad!r} on {ad.n_support_} items of {len(ad.classes_)} classes in {time.perf_counter() - t0:.1f} s")
    print("encoders: " + ", ".join(f"{m}={e.name}" for m, e in ad.encoders_.items()))
    print(f"saved to {out}/")
    return 0


def _rows(ad, names, proba, weights) -> list[dict]:
    rows = []
    for i, name in enumerate(names):
        j = int(proba[i].argmax())
        rows.append({
            "item": name,
            "label": ad.classes_[j].item() if hasattr(ad.classes_[j], "item") else ad.classes_[j],
            "probability": float(proba[i, j]),
            "probabilities": {str(c): float(p) for c, p in zip(ad.classes_, proba[i])},
            "modality_weights": {w: float(v) for w, v in zip(ad.weight_names_, weights[i])},
        })
    return rows


def _predict(a) -> int:
    from ..adapter import Adapter, as_items
    from ..errors import DataError

    if not a.files and not a.manifest:
        raise DataError("predict needs FILE arguments or --manifest")
    if a.manifest:
        _check_manifest(a.manifest)
    _check_output(a.output, "--output", inputs=list(a.files) + ([a.manifest] if a.manifest else []))
    ad = Adapter.load(a.adapter, device=a.device)
    items, names = [], []
    if a.files:
        its, nm, _ = as_items(list(a.files))
        items += its
        names += nm
    if a.manifest:
        its, nm, _ = as_items(a.manifest)
        items += its
        names += nm
    proba, weights = ad.predict_with_weights(ad._embed(items, names))
    rows = _rows(ad, names, proba, weights)
    buf = io.StringIO()
    if a.format == "json":
        json.dump(rows, buf, indent=2)
        buf.write("\n")
    elif a.format == "csv":
        cols = ["item", "label", "probability"] + [f"p:{c}" for c in ad.classes_] + [f"w:{w}" for w in ad.weight_names_]
        wr = csv.writer(buf)
        wr.writerow(cols)
        for r in rows:
            wr.writerow([r["item"], r["label"], f"{r['probability']:.6f}"] + [f"{v:.6f}" for v in r["probabilities"].values()]
                        + [f"{v:.4f}" for v in r["modality_weights"].values()])
    else:
        width = max(len(str(r["item"])) for r in rows)
        for r in rows:
            ws = " ".join(f"{k}={v:.2f}" for k, v in r["modality_weights"].items())
            buf.write(f"{r['item']:<{width}}  {str(r['label']):<16} p={r['probability']:.3f}  weights: {ws}\n")
    if a.output:
        Path(a.output).write_text(buf.getvalue())
        print(f"wrote {len(rows)} predictions to {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(buf.getvalue())
    return 0


def _eval(a) -> int:
    from sklearn.metrics import confusion_matrix

    from ..adapter import Adapter, as_items
    from ..errors import DataError
    from ..metrics import wilson_interval

    _check_manifest(a.manifest)
    _check_output(a.json, "--json", (".json",), inputs=[a.manifest])
    _check_output(a.confusion_png, "--confusion-png", (".png",), inputs=[a.manifest])
    ad = Adapter.load(a.adapter, device=a.device)
    items, names, y = as_items(a.manifest, require_labels=True)
    y = np.asarray(y)
    known = set(ad.classes_.astype(str).tolist())
    y_str = y.astype(str)
    unknown = sorted(set(y_str.tolist()) - known)
    if unknown:
        raise DataError(f"{a.manifest}: labels {unknown[:10]} are not classes of the adapter ({sorted(known)[:20]})")
    proba, weights = ad.predict_with_weights(ad._embed(items, names))
    pred = ad.classes_[proba.argmax(1)].astype(str)
    correct = int((pred == y_str).sum())
    acc, lo, hi = wilson_interval(correct, len(y_str))
    labels = ad.classes_.astype(str).tolist()
    cm = confusion_matrix(y_str, pred, labels=labels)
    print(f"{a.manifest}: {len(y_str)} items, {len(labels)} classes")
    print(f"accuracy {acc:.2f}%  (95% CI {lo:.2f}-{hi:.2f}, Wilson, {correct}/{len(y_str)} correct)")
    mean_w = weights.mean(0)
    print("mean modality weights: " + ", ".join(f"{w}={v:.3f}" for w, v in zip(ad.weight_names_, mean_w)))
    print("confusion matrix (rows: true, columns: predicted):")
    w = max(len(s) for s in labels + ["true\\pred"])
    cw = max(4, max(len(s) for s in labels))
    print(" " * w + "  " + " ".join(f"{s:>{cw}}" for s in labels))
    for s, row in zip(labels, cm):
        print(f"{s:<{w}}  " + " ".join(f"{v:>{cw}d}" for v in row))
    if a.confusion_png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.metrics import ConfusionMatrixDisplay

        size = max(4.0, 0.45 * len(labels) + 2)
        fig, ax = plt.subplots(figsize=(size, size))
        ConfusionMatrixDisplay(cm, display_labels=labels).plot(ax=ax, colorbar=False, xticks_rotation=90)
        ax.set_title(f"accuracy {acc:.1f}% (95% CI {lo:.1f}-{hi:.1f}), n={len(y_str)}")
        fig.tight_layout()
        fig.savefig(a.confusion_png, dpi=120)
        plt.close(fig)
        print(f"wrote {a.confusion_png}")
    if a.json:
        out = {"manifest": str(a.manifest), "adapter": str(a.adapter), "n_items": len(y_str), "correct": correct,
               "accuracy_percent": acc, "ci95_low_percent": lo, "ci95_high_percent": hi, "ci_method": "wilson", "classes": labels,
               "confusion_matrix": cm.tolist(), "mean_modality_weights": dict(zip(ad.weight_names_, map(float, mean_w))),
               "predictions": [{"item": n, "true": t, "pred": p} for n, t, p in zip(names, y_str.tolist(), pred.tolist())]}
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {a.json}")
    return 0


def _main(argv=None) -> int:
    from ..errors import FewmmError

    parser = build_parser()
    # `predict ADAPTER --format csv A.wav B.wav`: argparse stops the FILE list at the first option;
    # files given after an option come back as extras and are appended here.
    a, extra = parser.parse_known_args(argv)
    if getattr(a, "batch_size", 1) < 1:
        parser.error(f"--batch-size must be >= 1, got {a.batch_size}")
    if extra:
        if a.command == "predict" and not any(x.startswith("-") for x in extra):
            a.files = list(a.files) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        from ..encoders.base import resolve_device
        from ..plugins import import_plugins

        import_plugins(a.plugin)
        a.device = str(resolve_device(a.device))  # auto -> cuda when available, else cpu
        return {"fit": _fit, "predict": _predict, "eval": _eval}[a.command](a)
    except FewmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:  # bad head parameters and the like
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable output, missing file
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    """The command line (see ``--help``). SIGTERM stops it like Ctrl-C: one line, exit 130, with
    what was kept (:func:`fewmm.clihelp.interrupted_message`)."""
    from ..clihelp import run_interruptible

    return run_interruptible(_main, argv, 'the files it said it wrote (if any) are kept')
