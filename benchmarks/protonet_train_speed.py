"""Training throughput of fewmm's prototypical episode loop against a plain reference loop, same
model (Conv-4), same episodes, same optimiser, measured side by side in one run.

(a) ``fewmm``     - :mod:`fewmm.backbones.episodic`: one fancy-indexing gather of the episode's
                    (n_way, n_shot + n_query) images from the uint8 class tensor, one forward,
                    prototypes by a view + mean, ``torch.cdist`` distances, cross-entropy.
(b) ``reference`` - the loop as in the original Prototypical Networks code (Snell et al., PyTorch
                    port): images gathered one by one into a Python list and ``torch.stack``-ed,
                    float conversion per image, prototypes per class in a Python loop, squared
                    distances by broadcasting ``(q[:, None] - p[None]) ** 2``, cross-entropy.

Both start from the same initial weights and see the same episodes; the losses are compared (they
agree to float rounding). Each path runs ``--warmup`` untimed episodes, then ``--episodes`` timed
ones per round, in ``--rounds`` interleaved rounds (``benchmarks/interleaved.py``); episodes/s
from the median round, the ratio as the median of the per-round ratios with its spread.
``--device cuda --bf16`` runs the same under ``torch.autocast(bfloat16)`` on a GPU (gpu_check.sh).

    FEWMM_DATA=../shared/data .venv/bin/python benchmarks/protonet_train_speed.py --json results/protonet_train_speed.json
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "benchmarks"):  # run from a checkout; the shared timing helper
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from fewmm.backbones import create  # noqa: E402
from fewmm.backbones.episodic import EpisodicConfig, protonet_loss, sample_training_episode, to_input  # noqa: E402
from fewmm.backbones.omniglot28 import character_split, load_omniglot28, rotated_classes  # noqa: E402
from interleaved import fmt_ratio, machine_state, ratio_stats, run_interleaved, strip_last  # noqa: E402


def fewmm_step(net, opt, images, classes, items, cfg):
    x = to_input(images[torch.as_tensor(classes)[:, None], torch.as_tensor(items)])
    loss, _ = protonet_loss(net(x), cfg.n_way, cfg.n_shot, cfg.n_query)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def reference_step(net, opt, images, classes, items, cfg):
    xs = []
    for c, its in zip(classes, items):
        for i in its:
            xs.append(images[int(c), int(i)].float().div(255.0).unsqueeze(0))
    x = torch.stack(xs)
    z = net(x).view(cfg.n_way, cfg.n_shot + cfg.n_query, -1)
    protos = torch.stack([z[c, : cfg.n_shot].mean(0) for c in range(cfg.n_way)])
    q = z[:, cfg.n_shot :].reshape(cfg.n_way * cfg.n_query, -1)
    logits = -((q[:, None, :] - protos[None, :, :]) ** 2).sum(-1)
    target = torch.arange(cfg.n_way, device=logits.device).repeat_interleave(cfg.n_query)
    loss = F.cross_entropy(logits, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--way", type=int, default=60)
    p.add_argument("--shot", type=int, default=5)
    p.add_argument("--query", type=int, default=5)
    p.add_argument("--episodes", type=int, default=10, help="timed episodes per round and path")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--bf16", action="store_true", help="forward and loss under torch.autocast(bfloat16) (the GPU check)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    images, names = load_omniglot28(a.data_root, progress=False)
    train = rotated_classes(images, character_split(names)["train"])
    cfg = EpisodicConfig(n_way=a.way, n_shot=a.shot, n_query=a.query, seed=0, progress=False)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    train = train.to(dev)
    nets = {"fewmm": create("conv4").to(dev)}
    nets["reference"] = copy.deepcopy(nets["fewmm"])
    opts = {k: torch.optim.Adam(v.parameters(), lr=1e-3) for k, v in nets.items()}
    steps = {"fewmm": fewmm_step, "reference": reference_step}
    losses = {k: [] for k in nets}
    counter = {k: 0 for k in nets}  # each path sees the same episodes in the same order

    def run(k, n_episodes):
        def f():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
                for _ in range(n_episodes):
                    cl, it = sample_training_episode(train.shape[0], train.shape[1], cfg, counter[k])
                    losses[k].append(steps[k](nets[k], opts[k], train, cl, it, cfg))
                    counter[k] += 1
            if dev.type == "cuda":
                torch.cuda.synchronize()
        return f

    # benchmarks/interleaved.py: --warmup episodes each, then --rounds rounds of --episodes per path
    for k in nets:
        run(k, a.warmup)()
    runs = run_interleaved({k: run(k, a.episodes) for k in nets}, rounds=a.rounds, warmup=0)
    times = {k: runs["paths"][k]["wall_s"] for k in nets}
    diff = float(np.max(np.abs(np.array(losses["fewmm"]) - np.array(losses["reference"]))))
    rates = {k: a.episodes / float(np.median(v)) for k, v in times.items()}
    stable = ratio_stats(runs, "fewmm", "reference")
    res = {"config": vars(a), "episodes_per_s": rates, "times_s": times, "ratio_fewmm_over_reference": stable["median"],
           "ratio_fewmm_over_reference_stats": stable, "runs": strip_last(runs), "machine": machine_state(),
           "max_abs_loss_difference": diff, "losses_first_last": {k: [v[0], v[-1]] for k, v in losses.items()},
           "environment": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "cpu_count": os.cpu_count(), "loadavg_1_5_15": list(os.getloadavg()),
                           "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}}
    print(f"{a.way}-way {a.shot}-shot {a.query}-query Conv-4 training episodes/s: fewmm {rates['fewmm']:.2f}, reference "
          f"{rates['reference']:.2f} -> {fmt_ratio(stable)}; max |loss difference| {diff:.2e}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.json}")
    return res


if __name__ == "__main__":
    main()
