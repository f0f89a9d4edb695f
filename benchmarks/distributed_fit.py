"""Distributed episodic training with torchrun: a fusion head meta-trained with MAML, tasks split
across the ranks (fewmm.distributed.TaskParallel in fewmm.engine.fit).

::

    torchrun --nproc_per_node 2 benchmarks/distributed_fit.py --steps 20 --checkpoint runs/gmu-maml
    torchrun --nproc_per_node 4 benchmarks/distributed_fit.py --steps 40 --checkpoint runs/gmu-maml --resume
    python benchmarks/distributed_fit.py --steps 20                 # one process: the same parameters

Every rank builds the same head and features (synthetic Gaussian-cluster features here,
:func:`fewmm.heads.synthetic.make_synthetic`; put your own MMFeatures in their place), takes its
share of each step's ``--tasks`` tasks, and all ranks step together; rank 0 writes the checkpoints
(``--checkpoint``, a folder every rank sees) and prints the history. ``--resume`` continues from
``last.*`` with any number of ranks. ``--device auto`` puts rank r on ``cuda:LOCAL_RANK`` (NCCL)
where GPUs are present, else CPU (gloo).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    import torch

    import fewmm.heads as H
    from fewmm.distributed import TaskParallel, init_from_env, rank_device
    from fewmm.engine import FitConfig, HeadLearner, create_trainer, fit
    from fewmm.heads.synthetic import make_synthetic

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainer", default="maml", help="protonet, maml, fomaml, anil or metasgd")
    p.add_argument("--head", default="gmu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--tasks", type=int, default=8, help="tasks per step (split across the ranks)")
    p.add_argument("--checkpoint", help="checkpoint folder (rank 0 writes it)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=4, help="validate and checkpoint every this many steps")
    a = p.parse_args(argv)

    info = init_from_env(a.device)
    device = rank_device(a.device, info.local_rank)
    torch.manual_seed(a.seed)
    feats, _ = make_synthetic(n_classes=40, per_class=12, seed=a.seed)
    learner = HeadLearner(H.create(a.head, feats, seed=a.seed), feats, device=device)
    trainer = create_trainer(a.trainer)
    cfg = FitConfig(n_way=5, n_shot=1, n_query=5, episodes_per_step=a.tasks, steps=a.steps, eval_every=a.eval_every,
                    val_episodes=50, seed=a.seed, device=device, progress=info.rank == 0)
    par = TaskParallel()
    res = fit(learner, trainer, range(0, 28), range(28, 34), cfg, checkpoint_dir=a.checkpoint, resume=a.resume,
              parallel=par)
    if par.writer:
        print(json.dumps({"ranks": par.world_size, "steps": res.steps, "best_val_acc": res.best_val_acc,
                          "history": res.history}, indent=1))
    if info.world_size > 1:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
