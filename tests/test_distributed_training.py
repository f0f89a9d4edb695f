"""Distributed episodic training (fewmm.distributed.TaskParallel in fewmm.engine.fit): 2 CPU
processes with gloo, each on half of every step's tasks with all-reduced gradients, end with the
parameters of 1 process on the same task stream; rank 0 alone writes checkpoints; a 2-rank run
resumes in 1 process.

The head has no dropout: a rank draws dropout masks for its own share of the tasks only (rank 0
what one process draws, the others their own streams), so with dropout the runs agree in
distribution, not bit for bit."""

import numpy as np
import pytest
import torch

from fewmm.distributed import TaskParallel

BASE, VAL = list(range(12)), list(range(12, 16))


def setup(trainer_name):
    import fewmm.heads as H
    from fewmm.engine import FitConfig, HeadLearner, create_trainer
    from fewmm.heads.synthetic import make_synthetic

    torch.set_num_threads(1)
    f, _ = make_synthetic(n_classes=16, per_class=8, dims=(("image", 12), ("audio", 8)), seed=0)
    learner = HeadLearner(H.create("gmu", f, hidden=8, dropout=0.0, seed=0), f)  # no dropout: see the module docstring
    trainer = create_trainer(trainer_name, **({"inner_lr": 0.5, "inner_steps": 2} if trainer_name != "protonet" else {}))
    cfg = FitConfig(n_way=3, n_shot=1, n_query=3, episodes_per_step=4, steps=3, eval_every=3, val_episodes=6,
                    lr=0.01, progress=False, seed=0)
    return learner, trainer, cfg


def run_fit(trainer_name, parallel=None, **kw):
    from fewmm.engine import fit

    learner, trainer, cfg = setup(trainer_name)
    return fit(learner, trainer, BASE, VAL, cfg, parallel=parallel, **kw)


def _worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        par = TaskParallel()
        out = {}
        for name in ("maml", "protonet"):
            res = run_fit(name, par)
            out[name] = {"state": res.final_state, "history": res.history}
        # the weighted all-reduce by hand: rank 0 holds 1 task of 4, rank 1 holds 3
        a, b, c = (torch.nn.Parameter(torch.zeros(n)) for n in (3, 2, 1))
        a.grad = torch.full((3,), float(rank + 1))
        if rank == 0:
            b.grad = torch.ones(2)
        par.all_reduce_gradients([a, b, c], 1 if rank == 0 else 3, 4)
        out["reduce"] = {"a": a.grad, "b": b.grad, "c": c.grad}
        # 2 steps with checkpoints (each rank is given its own folder: rank 1's must stay empty)
        run_fit("maml", par, steps=2, eval_every=1, checkpoint_dir=f"{out_dir}/ckpt{rank}")
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    import torch.multiprocessing as mp

    d = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(d / "init"), str(d)), nprocs=2, join=True)
    return d


@pytest.mark.parametrize("trainer_name", ["maml", "protonet"])
def test_two_ranks_give_the_parameters_of_one_process(two_ranks, trainer_name):
    """3 steps of 4 tasks (ranks: 2 + 2). Max parameter difference measured: 2.2e-7 (maml) and
    3.0e-8 (protonet) on parameters up to 2.0 in size (float sums in another order); asserted
    within 1e-6 absolute + 1e-5 relative. Both ranks hold the same
    parameters, and report the loss/accuracy of all 4 tasks (history equal to 1 process's)."""
    one = run_fit(trainer_name)
    r0, r1 = (torch.load(two_ranks / f"rank{r}.pt")[trainer_name] for r in (0, 1))
    assert set(r0["state"]) == set(one.final_state) and len(one.final_state) > 0
    for k, v in one.final_state.items():
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # the ranks never diverge
        torch.testing.assert_close(r0["state"][k], v, atol=1e-6, rtol=1e-5, msg=k)
    moved = max((one.final_state[k].float() - setup(trainer_name)[0].model.state_dict()[k].float()).abs().max().item()
                for k in one.final_state)
    assert moved > 1e-3  # training changed the parameters, so equality is not trivial
    for h1, h2 in zip(one.history, r0["history"]):
        assert h1["step"] == h2["step"] and h1["val_acc"] == h2["val_acc"]
        assert h1["loss"] == pytest.approx(h2["loss"], rel=1e-5) and h1["train_acc"] == pytest.approx(h2["train_acc"], abs=1e-9)


def test_gradients_are_averaged_by_task_count_and_missing_ones_stay_none(two_ranks):
    """a: 1 * 1/4 + 2 * 3/4 = 1.75; b (a gradient on rank 0 only): 1 * 1/4 = 0.25; c (no gradient
    on any rank) keeps None, so Adam skips it as it does in one process."""
    for r in (0, 1):
        got = torch.load(two_ranks / f"rank{r}.pt")["reduce"]
        assert torch.equal(got["a"], torch.full((3,), 1.75)) and torch.equal(got["b"], torch.full((2,), 0.25))
        assert got["c"] is None


def test_rank_0_alone_checkpoints_and_one_process_resumes_a_two_rank_run(two_ranks):
    """The 2-rank run of 2 steps checkpointed by rank 0; 1 process resumes it to step 3 and ends
    where 1 process running 3 steps uninterrupted ends."""
    assert not (two_ranks / "ckpt1").exists()
    assert {p.name for p in (two_ranks / "ckpt0").iterdir()} >= {"last.json", "last.safetensors"}
    resumed = run_fit("maml", eval_every=1, checkpoint_dir=two_ranks / "ckpt0", resume=True)
    straight = run_fit("maml", eval_every=1)
    assert resumed.steps == 3 and [h["step"] for h in resumed.history] == [1, 2, 3]
    for k, v in straight.final_state.items():
        torch.testing.assert_close(resumed.final_state[k], v, atol=1e-6, rtol=1e-5, msg=k)


def test_task_split_and_refusals():
    from fewmm.episodes import sample_episodes

    par = TaskParallel()  # no process group: one rank
    assert (par.rank, par.world_size, par.writer) == (0, 1, True)
    eps = sample_episodes(np.repeat(np.arange(6), 5), 3, 1, 2, 5, seed=0)
    assert par.split(eps).n_episodes == 5 and par.mean([2.0, 0.5], 5, 5) == [2.0, 0.5]
    par.world_size, par.rank = 2, 1  # the slicing a rank 1 of 2 does
    sl = par.local_slice(5)
    assert (sl.start, sl.stop) == (2, 5)
    assert np.array_equal(par.split(eps).support, eps.support[2:5])
    par.world_size = 8
    with pytest.raises(ValueError, match="5 task\\(s\\) per step cannot be split across 8 ranks"):
        par.local_slice(5)
