"""Adapter latency: milliseconds per query of ``Adapter.predict`` at batch size 1, split into
encoder time (read the file + preprocess + frozen encoder: ``Adapter.transform``) and head time
(the fitted head / method on the features: ``Adapter.predict_proba(features)``).

Adapters are fitted on 5 labelled items per class of the shared data (seeded), encoders loaded
once; then ``--queries`` held-out items are predicted one at a time. Each query is timed after
``--warmup`` untimed queries; the median and 90th percentile are reported. The issue's target:
the head adds < 1 ms per query at batch size 1.

Configurations (all offline encoders):

* ``fsdd-speaker / logmel-stats / linear-probe``   (audio, 6 classes)
* ``fsdd-speaker / whisper-tiny-en / avg-proto``     (audio, 6 classes)
* ``fsdd-speaker / birdnet / avg-proto``             (audio, 6 classes)
* ``banking77 / minilm-l6 / protonet``               (text, 77 classes)
* ``mnist / efficientnet-lite2 / avg-proto``         (image, 10 classes)
* ``digits-av / efficientnet-lite2 + whisper-tiny-en / avg-proto, gmu (hidden 512 and 128),
  attention (width 512), temperature`` (image + audio, 10 classes; the trained heads with random
  parameters: their cost does not depend on training)

Usage::

    FEWMM_DATA=../shared/data .venv/bin/python benchmarks/adapter_latency.py --json results/adapter_latency.json
    ... --device cuda      # on a GPU machine
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fewmm import Adapter  # noqa: E402


def fewshot_split(labels: np.ndarray, shots: int, queries: int, seed: int):
    """Per class: ``shots`` training rows, then up to ``queries`` rows spread over classes."""
    rng = np.random.default_rng(seed)
    train, rest = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train += idx[:shots].tolist()
        rest += idx[shots:].tolist()
    rest = rng.permutation(np.asarray(rest))[:queries]
    return np.asarray(train), rest


def table_items(table, rows, modalities):
    return [{m: table.modalities[m][i] for m in modalities if table.modalities[m][i] is not None} for i in rows]


def configs(data_root, shots: int, n_queries: int, seed: int):
    import fewmm.data as D

    out = []
    fsdd = D.load("fsdd", root=data_root, label="speaker")
    tr, q = fewshot_split(fsdd.labels, shots, n_queries, seed)
    y = np.asarray(fsdd.class_names)[fsdd.labels]
    for enc, head in (("logmel-stats", "linear-probe"), ("whisper-tiny-en", "avg-proto"), ("birdnet", "avg-proto")):
        out.append((f"fsdd-speaker/{enc}/{head}", {"audio": enc}, head, table_items(fsdd, tr, ["audio"]), y[tr],
                    table_items(fsdd, q, ["audio"])))
    bank = D.load("banking77", root=data_root)
    tr, q = fewshot_split(bank.labels, shots, n_queries, seed)
    y = np.asarray(bank.class_names)[bank.labels]
    out.append(("banking77/minilm-l6/protonet", {"text": "minilm-l6"}, "protonet", table_items(bank, tr, ["text"]), y[tr],
                table_items(bank, q, ["text"])))
    mnist = D.load("mnist", root=data_root)
    tr, q = fewshot_split(mnist.labels, shots, n_queries, seed)
    y = np.asarray(mnist.class_names)[mnist.labels]
    out.append(("mnist/efficientnet-lite2/avg-proto", {"image": "efficientnet-lite2"}, "avg-proto", table_items(mnist, tr, ["image"]),
                y[tr], table_items(mnist, q, ["image"])))
    # digits-av: an MNIST image and an FSDD digit recording of the same class per item
    fd = D.load("fsdd", root=data_root)
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for c in range(10):
        im = rng.permutation(np.flatnonzero(mnist.labels == c))[: shots + n_queries]
        au = rng.permutation(np.flatnonzero(fd.labels == c))[: shots + n_queries]
        for i, j in zip(im, au):
            items.append({"image": mnist.modalities["image"][i], "audio": fd.modalities["audio"][j]})
            labels.append(str(c))
    labels = np.asarray(labels)
    tr, q = fewshot_split(labels, shots, n_queries, seed)
    from fewmm.heads import create as create_head

    def trained(name, **kw):  # random parameters: the cost of a head does not depend on training
        return lambda: create_head(name, {"image": 1280, "audio": 384}, ("image", "audio"), seed=0, **kw)

    av = {"image": "efficientnet-lite2", "audio": "whisper-tiny-en"}
    for label, head in (("avg-proto", "avg-proto"), ("gmu(hidden=512)", trained("gmu")), ("gmu(hidden=128)", trained("gmu", hidden=128)),
                        ("attention(width=512)", trained("attention")), ("temperature", trained("temperature"))):
        out.append((f"digits-av/efficientnet-lite2+whisper-tiny-en/{label}", av, head, [items[i] for i in tr], labels[tr],
                    [items[i] for i in q]))
    return out


def measure(name, encoders, head, train_items, train_labels, queries, device, warmup):
    t0 = time.perf_counter()
    ad = Adapter(encoders=encoders, head=head() if callable(head) else head, device=device).fit(train_items, train_labels)
    fit_s = time.perf_counter() - t0
    enc_ms, head_ms = [], []
    for k, item in enumerate(queries):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        feats = ad.transform([item])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        ad.predict_proba(feats)
        t3 = time.perf_counter()
        if k >= warmup:
            enc_ms.append(1e3 * (t2 - t1))
            head_ms.append(1e3 * (t3 - t2))
    enc, hd = np.asarray(enc_ms), np.asarray(head_ms)
    row = {"config": name, "encoders": {m: e.name for m, e in ad.encoders_.items()},
           "head": head if isinstance(head, str) else ad.head_.name,
           "head_hparams": {} if isinstance(head, str) else dict(ad.head_.hparams),
           "classes": int(len(ad.classes_)), "train_items": int(ad.n_support_), "queries_timed": int(enc.size), "fit_s": fit_s,
           "encoder_ms_median": float(np.median(enc)), "encoder_ms_p90": float(np.percentile(enc, 90)),
           "head_ms_median": float(np.median(hd)), "head_ms_p90": float(np.percentile(hd, 90)),
           "total_ms_median": float(np.median(enc + hd)), "head_under_1ms": bool(np.median(hd) < 1.0)}
    print(f"{name:<52s} encoder {row['encoder_ms_median']:8.2f} ms (p90 {row['encoder_ms_p90']:7.2f})   "
          f"head {row['head_ms_median']:6.3f} ms (p90 {row['head_ms_p90']:6.3f})   fit {fit_s:5.1f} s")
    return row


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--queries", type=int, default=60, help="queries per configuration (default 60)")
    p.add_argument("--warmup", type=int, default=5, help="first queries not timed (default 5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=None, help="run the configurations whose name contains this")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for name, enc, head, tr_items, tr_y, q_items in configs(a.data_root, a.shots, a.queries + a.warmup, a.seed):
        if a.only and a.only not in name:
            continue
        rows.append(measure(name, enc, head, tr_items, tr_y, q_items, a.device, a.warmup))
    worst = max(r["head_ms_median"] for r in rows)
    print(f"head time at batch size 1: at most {worst:.3f} ms median over configurations; target < 1 ms: "
          f"{'met' if worst < 1 else 'MISSED'}")
    env = {"python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "device": a.device, "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "loadavg_1_5_15": list(os.getloadavg()),
           "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if a.device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except Exception:
        env["git_commit"] = None
    result = {"command": "python benchmarks/adapter_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "config": vars(a), "rows": rows, "head_ms_median_max": worst, "target_head_under_1ms": worst < 1.0,
              "environment": env}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.json}")
    return result


if __name__ == "__main__":
    main()
