"""Memory and time of second-order vs first-order MAML on Conv-4 at 20-way 5-shot (Omniglot-sized
28x28 inputs, 15 queries per class), one meta-step each in a fresh process, side by side.

Peak resident memory is read from ``resource.getrusage`` (max RSS) after building the model and
the tasks (baseline) and after the meta-step; the difference is the meta-step's peak extra memory.
Random inputs: memory and time do not depend on the pixel values.

    .venv/bin/python benchmarks/maml_conv4_memory.py --json results/maml_conv4_memory.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(order: str, way: int, shot: int, query: int, meta_batch: int, inner_steps: int, threads: int) -> dict:
    import time

    import torch

    sys.path.insert(0, str(REPO))
    from fewmm.backbones import create
    from fewmm.backbones.maml import MAMLNet
    from fewmm.engine import ItemReshape
    from fewmm.meta import MAML

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = MAMLNet(create("conv4"), 64, way)
    # the engine's backbone MAML: fewmm.meta.MAML over the meta-batch (vmap), rows reshaped to images
    maml = MAML(ItemReshape(net, (1, 28, 28)), inner_lr=0.4, inner_steps=inner_steps, first_order=(order == "first"), feature_norm=None)
    xs = torch.rand(meta_batch, way * shot, 28 * 28)
    xq = torch.rand(meta_batch, way * query, 28 * 28)
    ys = torch.arange(way).repeat_interleave(shot).expand(meta_batch, -1)
    yq = torch.arange(way).repeat_interleave(query).expand(meta_batch, -1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    loss, _ = maml.meta_loss(xs, ys, xq, yq)
    loss.backward()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"order": order, "peak_extra_mib": (peak - base) / 1024.0, "baseline_maxrss_mib": base / 1024.0, "seconds": dt}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--way", type=int, default=20)
    p.add_argument("--shot", type=int, default=5)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--meta-batch", type=int, default=4)
    p.add_argument("--inner-steps", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--child", choices=("first", "second"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(one(a.child, a.way, a.shot, a.query, a.meta_batch, a.inner_steps, a.threads)))
        return {}
    rows = {}
    for order in ("first", "second"):
        out = subprocess.run([sys.executable, __file__, "--child", order, "--way", str(a.way), "--shot", str(a.shot), "--query", str(a.query),
                              "--meta-batch", str(a.meta_batch), "--inner-steps", str(a.inner_steps), "--threads", str(a.threads)],
                             capture_output=True, text=True, check=True)
        rows[order] = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = rows["second"]["peak_extra_mib"] / max(rows["first"]["peak_extra_mib"], 1e-9)
    res = {"config": {k: v for k, v in vars(a).items() if k != "child"}, "rows": rows, "second_over_first_memory": ratio,
           "second_over_first_time": rows["second"]["seconds"] / rows["first"]["seconds"],
           "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "loadavg_1_5_15": list(os.getloadavg()),
                           "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}}
    for o in ("first", "second"):
        print(f"{o}-order MAML, Conv-4, {a.way}-way {a.shot}-shot {a.query}-query, meta-batch {a.meta_batch}, {a.inner_steps} inner step(s): "
              f"peak extra memory {rows[o]['peak_extra_mib']:.0f} MiB, {rows[o]['seconds']:.2f} s per meta-step")
    print(f"second / first order: memory {ratio:.2f}x, time {res['second_over_first_time']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.json}")
    return res


if __name__ == "__main__":
    main()
