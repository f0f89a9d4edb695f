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
ones, alternating in ``--rounds`` rounds; the best round is reported.

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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fewmm.backbones import create  # noqa: E402
from fewmm.backbones.episodic import EpisodicConfig, protonet_loss, sample_training_episode, to_input  # noqa: E402
from fewmm.backbones.omniglot28 import character_split, load_omniglot28, rotated_classes  # noqa: E402


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
    target = torch.arange(cfg.n_way).repeat_interleave(cfg.n_query)
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
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    images, names = load_omniglot28(a.data_root, progress=False)
    train = rotated_classes(images, character_split(names)["train"])
    cfg = EpisodicConfig(n_way=a.way, n_shot=a.shot, n_query=a.query, seed=0, progress=False)
    torch.manual_seed(0)
    nets = {"fewmm": create("conv4")}
    nets["reference"] = copy.deepcopy(nets["fewmm"])
    opts = {k: torch.optim.Adam(v.parameters(), lr=1e-3) for k, v in nets.items()}
    steps = {"fewmm": fewmm_step, "reference": reference_step}
    losses = {k: [] for k in nets}
    times = {k: [] for k in nets}
    ep = 0
    for k in nets:  # warm-up, same episodes for both
        for e in range(a.warmup):
            cl, it = sample_training_episode(train.shape[0], train.shape[1], cfg, e)
            losses[k].append(steps[k](nets[k], opts[k], train, cl, it, cfg))
    ep = a.warmup
    for r in range(a.rounds):
        for k in nets:
            t0 = time.perf_counter()
            for e in range(ep, ep + a.episodes):
                cl, it = sample_training_episode(train.shape[0], train.shape[1], cfg, e)
                losses[k].append(steps[k](nets[k], opts[k], train, cl, it, cfg))
            times[k].append(time.perf_counter() - t0)
        ep += a.episodes
    diff = float(np.max(np.abs(np.array(losses["fewmm"]) - np.array(losses["reference"]))))
    rates = {k: a.episodes / min(v) for k, v in times.items()}
    res = {"config": vars(a), "episodes_per_s": rates, "times_s": times, "ratio_fewmm_over_reference": rates["fewmm"] / rates["reference"],
           "max_abs_loss_difference": diff, "losses_first_last": {k: [v[0], v[-1]] for k, v in losses.items()},
           "environment": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "cpu_count": os.cpu_count(), "loadavg_1_5_15": list(os.getloadavg()),
                           "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}}
    print(f"{a.way}-way {a.shot}-shot {a.query}-query Conv-4 training episodes/s: fewmm {rates['fewmm']:.2f}, reference "
          f"{rates['reference']:.2f} -> {res['ratio_fewmm_over_reference']:.2f}x; max |loss difference| {diff:.2e}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.json}")
    return res


if __name__ == "__main__":
    main()
