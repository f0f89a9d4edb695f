"""Feature extraction: the whole pipeline against the bare encoder forward, per encoder.

For each encoder (``--encoders``, default efficientnet-lite2 on Omniglot, whisper-tiny-en on FSDD,
birdnet on ESC-50, minilm-l6 on BANKING77: the first ``--items`` items of the data set's default
split), three paths run interleaved (``benchmarks/interleaved.py``: one warm-up, then ``--rounds``
rounds of each path once, order reversed every other round):

``pipeline``   :func:`fewmm.cache.embed_table` into a fresh cache folder each round: read the
               files, decode, resample or resize, batch, encode (``Encoder.embed``, which prepares
               batch i + 1 in a worker thread while the encoder runs batch i), write the cache file;
``sequential`` the same reading and decoding, batch after batch, with no read-ahead (prepare a
               batch, then encode it): what ``embed`` did before the read-ahead; no cache write;
``bare``       the encoder forward alone on the same already-decoded inputs in the same batches.

Reported per encoder: median over rounds of ``time(pipeline) / time(bare) - 1`` (the pipeline's
overhead; target <= 20%) and of ``time(sequential) / time(bare) - 1``, with their 25th-75th
percentiles, the load average per round and the thread counts. Three batches per encoder by
default (the read-ahead cannot hide the first batch's decoding: more batches, less overhead). The overheads are ratios measured
side by side; items/s are absolute numbers of this machine at that load.

Usage::

    FEWMM_DATA=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/extraction_speed.py \\
        --json results/extraction_speed.json
    .venv/bin/python benchmarks/extraction_speed.py --encoders minilm-l6 --items 128 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "benchmarks"):  # run from a checkout without installing; the shared timing helper
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from interleaved import fmt_ratio, json_path_problem, machine_state, ratio_stats, run_interleaved, strip_last, verdict  # noqa: E402

#: encoder -> (data set, items by default)
DEFAULTS = {
    "efficientnet-lite2": ("omniglot", 96),
    "whisper-tiny-en": ("fsdd", 48),
    "birdnet": ("esc50", 96),
    "minilm-l6": ("banking77", 192),
}


def measure(name: str, dataset: str, n_items: int, rounds: int, data_root: str | None) -> dict:
    import fewmm.data as D
    import fewmm.encoders as E
    from fewmm.cache import FeatureCache, embed_table

    t0 = time.perf_counter()
    table = D.load(dataset, root=data_root, download=False)
    enc = E.create(name, device="cpu")
    idx = [i for i in range(len(table)) if table.mask(enc.modality)[i]][:n_items]
    sub = table.subset(idx, name=f"{table.name}[:{len(idx)}]")
    payloads = [sub.modalities[enc.modality][i] for i in range(len(sub))]
    bs = enc.batch_size
    batches = [payloads[s : s + bs] for s in range(0, len(payloads), bs)]
    decoded = [enc.prepare_batch(b, s * bs) for s, b in enumerate(batches)]  # for the bare forward
    setup_s = time.perf_counter() - t0

    def pipeline():
        tmp = tempfile.mkdtemp(prefix="fewmm-extract-bench-")
        try:
            return embed_table(sub, enc, cache=FeatureCache(tmp), progress=False).features
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def sequential():
        with torch.inference_mode():
            return torch.cat([enc._forward(enc.prepare_batch(b, s * bs)) for s, b in enumerate(batches)])

    def bare():
        with torch.inference_mode():
            return torch.cat([enc._forward(b) for b in decoded])

    runs = run_interleaved({"pipeline": pipeline, "sequential": sequential, "bare": bare}, rounds=rounds, warmup=1)
    same = bool(torch.equal(runs["paths"]["pipeline"]["last"], runs["paths"]["bare"]["last"]))
    ov = ratio_stats(runs, "bare", "pipeline")  # time(pipeline) / time(bare)
    ov_seq = ratio_stats(runs, "bare", "sequential")
    row = {
        "encoder": name, "dataset": dataset, "items": len(payloads), "batch_size": bs, "setup_s": setup_s,
        "pipeline_features_equal_bare": same,
        "pipeline_over_bare": ov, "sequential_over_bare": ov_seq,
        "overhead_pipeline": {k: (v - 1 if isinstance(v, float) else v) for k, v in ov.items() if k in ("median", "q25", "q75", "min", "max")},
        "verdict": verdict(ov, 1.2, at_least=False),
        "items_per_s_median": {p: len(payloads) / runs["paths"][p]["wall_s_median"] for p in runs["paths"]},
        "runs": strip_last(runs), "machine": machine_state(),
    }
    print(f"{name} on {dataset} ({len(payloads)} items, batches of {bs}; load {min(runs['loadavg_per_round']):.1f}-"
          f"{max(runs['loadavg_per_round']):.1f}): pipeline / bare forward {fmt_ratio(ov)} -> overhead "
          f"{100 * (ov['median'] - 1):+.0f}% ({row['verdict']['verdict']} {row['verdict']['target']}"
          f"{'' if row['verdict']['stable'] else ', not stable'}); without read-ahead {fmt_ratio(ov_seq)}; "
          f"items/s pipeline {row['items_per_s_median']['pipeline']:.1f}, bare {row['items_per_s_median']['bare']:.1f}; "
          f"features equal: {same}", flush=True)
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", type=lambda s: s.split(","), default=list(DEFAULTS), help=f"comma-separated, of {','.join(DEFAULTS)}")
    ap.add_argument("--items", type=int, default=None, help="items per encoder (default: 3 batches: " +
                    ", ".join(f"{k} {v[1]}" for k, v in DEFAULTS.items()) + ")")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--data-root", default=None, help="data root (default $FEWMM_DATA)")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args(argv)
    bad = [e for e in a.encoders if e not in DEFAULTS]
    if bad:
        ap.error(f"unknown --encoders {bad}; known: {','.join(DEFAULTS)}")
    why = json_path_problem(a.json)  # before any timing
    if why:
        ap.error(why)
    torch.set_num_threads(a.threads)
    rows = []
    out = {"benchmark": "extraction_speed", "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
           "config": vars(a), "rows": rows}
    for name in a.encoders:
        ds, n = DEFAULTS[name]
        try:
            rows.append(measure(name, ds, a.items or n, a.rounds, a.data_root))
        except Exception as e:  # one encoder's missing weights or data must not hide the others
            print(f"{name}: skipped ({type(e).__name__}: {str(e)[:300]})", flush=True)
            rows.append({"encoder": name, "dataset": ds, "error": f"{type(e).__name__}: {e}"})
        if a.json:  # after every encoder: a long run stopped half-way keeps what it measured
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps({**out, "machine": machine_state()}, indent=2) + "\n")
    out["machine"] = machine_state()
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {a.json}")
    return out


if __name__ == "__main__":
    main()
