"""The episodic engine (fewmm.engine): task stream pinned to the pre-engine sampler, trainers
orthogonal to models, Proto-MAML for fusion heads checked against learn2learn, the fit loop's
validation modes, schedule, mixed precision, exact resume and checkpoint refusal."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fewmm.heads as H
from fewmm.engine import (
    HISTORY_KEYS, FitConfig, HeadLearner, TaskStream, create_trainer, fit, fixed_tasks, holdout_split, list_trainers, task_hash,
)
from fewmm.episodes import sample_episodes
from fewmm.errors import CheckpointError, EpisodeError, UnknownNameError
from fewmm.heads.synthetic import make_synthetic
from fewmm.multimodal import MMBatch

BASE, VAL, NOVEL = range(0, 80), range(80, 90), range(90, 100)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data():
    f, corrupted = make_synthetic(n_classes=100, per_class=20, noise=(2.0, 1.0), corrupt_noise=0.3, seed=0)
    return f


# ------------------------------------------------------------------------------------------------
# task stream
# ------------------------------------------------------------------------------------------------
def _labels():
    labels = np.repeat(np.arange(40), 12)
    return labels[np.random.default_rng(0).permutation(labels.size)]


def test_task_stream_is_pinned_to_the_pre_engine_sampler():
    # the hashes were computed with fewmm.train.training_episodes / validation_episodes of main at
    # fa9f6c2 (before the engine; /tmp/hash_old.py in the engine report): the stream is unchanged
    labels = _labels()
    stream = TaskStream(labels, range(30), n_way=5, n_shot=(1, 5), n_query=4, tasks_per_step=3, seed=7)
    assert task_hash([stream(t) for t in range(10)]) == "5ae013b88b3c60df626df3c1a7870f85ee169274ee3da806daf09ec263c5da6a"
    val = fixed_tasks(labels, range(30, 40), 5, 1, 4, 20, seed=7)
    assert task_hash(val) == "28ea88a111b45316c1db0f92f57c481e393f82252fe4f8c70a82d4f9cd0901d8"
    # step t depends on (seed, t) only; another seed gives other tasks; base classes only
    assert task_hash(stream(4)) == task_hash(TaskStream(labels, range(30), 5, (1, 5), 4, 3, seed=7)(4))
    assert task_hash(stream(4)) != task_hash(TaskStream(labels, range(30), 5, (1, 5), 4, 3, seed=8)(4))
    assert set(np.unique(labels[stream(3).query])) <= set(range(30))


def test_holdout_split_and_native_holdout_validation():
    labels = _labels()
    tr, held = holdout_split(labels, range(30), 0.25, seed=0)
    assert np.intersect1d(tr, held).size == 0
    assert set(np.unique(labels[held])) == set(range(30))  # every base class keeps held-out items
    assert held.size == 30 * 3 and tr.size == 30 * 9  # round(0.25 * 12) = 3 per class
    stream = TaskStream(labels, range(30), 5, 1, 4, 8, seed=0, items=tr)
    for t in range(20):
        eps = stream(t)
        assert np.isin(eps.support, tr).all() and np.isin(eps.query, tr).all()
    val = fixed_tasks(labels, range(30), 5, 1, 2, 50, seed=0, items=held)
    assert np.isin(val.support, held).all() and np.isin(val.query, held).all()
    # labels are the base classes themselves (no relabelling)
    assert set(labels[val.query.ravel()]) <= set(range(30))
    with pytest.raises(EpisodeError, match="at least 2 per class"):
        holdout_split(np.array([0, 0, 1]), [0, 1], 0.5, 0)


def test_fit_with_holdout_validation_never_trains_on_held_out_items(data):
    head = H.create("gmu", data, seed=0, hidden=16)
    cfg = FitConfig(n_shot=1, n_query=5, episodes_per_step=2, steps=6, eval_every=3, val_episodes=20, progress=False,
                    validation="holdout", holdout_fraction=0.3)
    res = fit(HeadLearner(head, data), create_trainer("protonet"), BASE, None, cfg)
    tr, held = holdout_split(data.labels, BASE, 0.3, 0)
    assert np.isin(res.train_items, tr).all() and np.isin(res.val_items, held).all()
    assert set(data.labels[res.val_items]) <= set(BASE)
    assert [h["step"] for h in res.history] == [3, 6] and all(tuple(h) == HISTORY_KEYS for h in res.history)


def test_too_few_validation_classes_name_the_validation_split_and_the_fix(data):
    """3 validation classes for 5-way validation tasks: the error says it is the validation split
    and which FitConfig fields fix it (found by a fresh-user review: a bare sampler message)."""
    head = H.create("gmu", data, seed=0, hidden=16)
    cfg = FitConfig(n_shot=1, n_query=5, steps=2, eval_every=2, val_episodes=5, progress=False)
    with pytest.raises(EpisodeError, match=r"^validation tasks on the 3 validation classes \(classes\): 5-way episodes need 5 "
                                           r"classes .*; set FitConfig\(val_way=\.\.\., val_shot=\.\.\., val_query=\.\.\.\)"):
        fit(HeadLearner(head, data), create_trainer("protonet"), list(range(30)), [30, 31, 32], cfg)
    cfg = FitConfig(n_shot=1, n_query=5, steps=2, eval_every=2, val_episodes=5, progress=False, val_way=3)
    assert fit(HeadLearner(head, data), create_trainer("protonet"), list(range(30)), [30, 31, 32], cfg).steps == 2


# ------------------------------------------------------------------------------------------------
# trainers
# ------------------------------------------------------------------------------------------------
def test_trainer_registry():
    assert list_trainers() == ["anil", "fomaml", "maml", "metasgd", "protonet"]
    assert create_trainer("fomaml").first_order and not create_trainer("maml").first_order
    assert create_trainer("anil").scope == "classifier" and create_trainer("metasgd").scope == "all"
    with pytest.raises(UnknownNameError, match="Did you mean 'maml'"):
        create_trainer("mamll")
    with pytest.raises(ValueError, match="inner_lr"):
        create_trainer("maml", inner_lr=-1.0)


def _double_batch(f, n_shot, seed, n_tasks=3, n_query=4):
    eps = sample_episodes(f.labels, 5, n_shot, n_query, n_tasks, seed=seed, classes=BASE)
    b = f.batch(eps)
    d = {m: v.double() for m, v in b.support.items()}
    q = {m: v.double() for m, v in b.query.items()}
    return MMBatch(d, b.support_mask, q, b.query_mask, None, b.query_labels, b.modalities)


def _head(name, f):
    kw = {"gmu": dict(hidden=12, dropout=0.0), "attention": dict(width=12, dropout=0.0)}[name]
    return H.create(name, f, seed=3, **kw).double()


class _RefProtoMAML(nn.Module):
    """Independent Proto-MAML module for learn2learn: the head's item embedding and a zero
    classifier added to the per-task prototype initialisation (no row packing)."""

    def __init__(self, head, n_way, width):
        super().__init__()
        self.model = head
        self.classifier = nn.Linear(width, n_way).double()
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x, mask, w0, b0):
        e = self.model.item_embedding(x, mask)
        return e @ (w0 + self.classifier.weight).T + b0 + self.classifier.bias


LR, STEPS = 0.3, 3


def _learn2learn(f, name, trainer, batch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        l2l = pytest.importorskip("learn2learn")
    head = _head(name, f)
    e, n, k = batch.support_mask.shape[:3]
    ref = _RefProtoMAML(head, n, head.class_embedding(batch).shape[-1])
    fo = trainer == "fomaml"
    meta = l2l.algorithms.MAML(ref.classifier if trainer == "anil" else ref, lr=LR, first_order=fo, allow_unused=True)
    total, adapted = 0.0, []
    for t in range(e):
        bt = MMBatch({m: v[t : t + 1] for m, v in batch.support.items()}, batch.support_mask[t : t + 1],
                     {m: v[t : t + 1] for m, v in batch.query.items()}, batch.query_mask[t : t + 1], None,
                     batch.query_labels[t : t + 1], batch.modalities)
        p = head.class_embedding(bt)[0]
        s = head.metric_scale()
        w0, b0 = 2 * s * p, -s * (p * p).sum(-1)
        xs = {m: v[0].reshape(n * k, -1) for m, v in bt.support.items()}
        ms = bt.support_mask[0].reshape(n * k, -1)
        ys = torch.arange(n).repeat_interleave(k)
        learner = meta.clone()
        if trainer == "anil":
            es, eq = head.item_embedding(xs, ms), head.item_embedding({m: v[0] for m, v in bt.query.items()}, bt.query_mask[0])
            run_s = lambda: es @ (w0 + learner.weight).T + b0 + learner.bias  # noqa: E731
            run_q = lambda: eq @ (w0 + learner.weight).T + b0 + learner.bias  # noqa: E731
        else:
            run_s = lambda: learner(xs, ms, w0, b0)  # noqa: E731
            run_q = lambda: learner({m: v[0] for m, v in bt.query.items()}, bt.query_mask[0], w0, b0)  # noqa: E731
        for _ in range(STEPS):
            learner.adapt(F.cross_entropy(run_s(), ys))
        total = total + F.cross_entropy(run_q(), bt.query_labels[0])
        adapted.append({n_: p_.detach().clone() for n_, p_ in learner.module.named_parameters()})
    loss = total / e
    loss.backward()
    grads = {f"model.{n_}": p_.grad.clone() for n_, p_ in head.named_parameters() if p_.grad is not None}
    return float(loss.detach()), grads, adapted


@pytest.mark.parametrize("name,trainer", [("gmu", "maml"), ("gmu", "fomaml"), ("gmu", "anil"), ("attention", "maml")])
def test_proto_maml_head_matches_learn2learn(data, name, trainer):
    batch = _double_batch(data, n_shot=2, seed=5)
    ref_loss, ref_grads, ref_adapted = _learn2learn(data, name, trainer, batch)
    head = _head(name, data)
    learner = HeadLearner(head, data)
    tr = create_trainer(trainer, inner_lr=LR, inner_steps=STEPS)
    tr.prepare(learner, batch)
    loss, _ = tr.loss(learner, batch)
    loss.backward()
    grads = {f"model.{n}": p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}
    assert abs(float(loss) - ref_loss) <= 1e-5 * abs(ref_loss)
    assert set(grads) == set(ref_grads) and len(grads) >= 5
    for n, g in ref_grads.items():  # meta-gradients, within 1e-5 relative (to the largest entry)
        assert float((grads[n] - g).abs().max()) <= 1e-5 * max(float(g.abs().max()), 1e-12), n
    _, sx, sy, _, _ = learner.inner_task(batch)
    params = tr.maml.adapt(sx, sy)
    for t, ref in enumerate(ref_adapted):
        for n, v in ref.items():
            key = f"classifier.{n}" if trainer == "anil" else n
            got = params[key][t].detach()
            assert float((got - v).abs().max()) <= 1e-5 * max(float(v.abs().max()), 1e-6), (key, t)
    if trainer == "anil":  # the model declared the classifier only: the head is not adapted
        w = params["model.proj.image.weight"]
        assert torch.equal(w[0], head.proj["image"].weight) and torch.equal(w[1], w[2])
    else:
        assert not torch.equal(params["model.proj.image.weight"][0], params["model.proj.image.weight"][1])


def test_proto_maml_starts_from_the_head_prototypes(data):
    # before adaptation the Proto-MAML classifier equals the head's logits up to a per-query constant
    head = H.create("gmu", data, seed=0, hidden=16).eval()
    eps = sample_episodes(data.labels, 5, 3, 4, 2, seed=1, classes=BASE)
    learner = HeadLearner(head, data)
    batch = learner.batch(eps)
    with torch.no_grad():
        mod, sx, sy, qx, qy = learner.inner_task(batch)
        a = mod(qx)
        b = head(batch)[0]
    diff = a - b
    assert float((diff - diff[..., :1]).abs().max()) < 1e-3 * float(b.abs().max())


@pytest.mark.parametrize("trainer", ["maml", "fomaml", "anil", "metasgd"])
def test_maml_family_trains_heads_and_resumes_exactly(data, trainer, tmp_path):
    cfg = FitConfig(n_shot=5, n_query=5, episodes_per_step=2, steps=8, eval_every=4, val_episodes=20, lr=3e-3, progress=False)

    def run(**kw):
        head = H.create("gmu", data, seed=0, hidden=16)
        return fit(HeadLearner(head, data, modality_dropout=0.2), create_trainer(trainer, inner_lr=0.5, inner_steps=2),
                   BASE, VAL, cfg, **kw)

    straight = run(checkpoint_dir=tmp_path / "a")
    run(checkpoint_dir=tmp_path / "b", steps=4)
    resumed = run(checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.steps == straight.steps == 8
    for k, v in straight.final_state.items():
        assert torch.equal(v, resumed.final_state[k]), k
    drop = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert drop(straight.history) == drop(resumed.history)
    assert straight.trainer["name"] == trainer and 0.2 < straight.best_val_acc <= 1.0
    saved = json.loads((tmp_path / "a" / "last.json").read_text())
    assert saved["run"]["trainer"]["name"] == trainer
    if trainer == "metasgd":  # the learned inner rates are meta-parameters, saved and resumed
        from safetensors.torch import load_file

        t = load_file(str(tmp_path / "a" / "last.safetensors"))
        assert any(k.startswith("trainer.") for k in t)
    # the best weights load as a plain head
    loaded = H.create("gmu", data, seed=1, hidden=16)
    from fewmm.train import load_head

    load_head(tmp_path / "a", data, head=loaded)
    for k, v in straight.head.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_other_trainer_or_pre_engine_checkpoint_is_refused(data, tmp_path):
    cfg = FitConfig(n_shot=1, n_query=5, episodes_per_step=2, steps=2, eval_every=2, val_episodes=10, progress=False)
    head = lambda: H.create("gmu", data, seed=0, hidden=16)  # noqa: E731
    fit(HeadLearner(head(), data), create_trainer("protonet"), BASE, VAL, cfg, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="other trainer"):
        fit(HeadLearner(head(), data), create_trainer("anil"), BASE, VAL, cfg, checkpoint_dir=tmp_path, resume=True, steps=4)
    # a last.json written by train_head before the engine
    js = json.loads((tmp_path / "last.json").read_text())
    js["format"] = "fewmm-head-checkpoint/1"
    (tmp_path / "last.json").write_text(json.dumps(js))
    with pytest.raises(CheckpointError, match="before the engine .* cannot be resumed: start a new run"):
        fit(HeadLearner(head(), data), create_trainer("protonet"), BASE, VAL, cfg, checkpoint_dir=tmp_path, resume=True, steps=4)


def test_schedule_clip_and_bf16_autocast_on_cpu(data):
    cfg = FitConfig(n_shot=1, n_query=5, episodes_per_step=2, steps=6, eval_every=2, val_episodes=10, progress=False,
                    lr=1e-2, lr_schedule="step", decay_every=2, lr_decay=0.5, amp="bf16", grad_clip=0.5)
    res = fit(HeadLearner(H.create("gmu", data, seed=0, hidden=16), data), create_trainer("protonet"), BASE, VAL, cfg)
    # the lr of the last step of each validation window: steps 1, 3, 5 (0-based) -> 1e-2 * 0.5^(t // 2)
    assert [h["lr"] for h in res.history] == [1e-2, 5e-3, 2.5e-3]
    assert all(np.isfinite(h["loss"]) for h in res.history)
    assert FitConfig(lr_schedule="cosine", steps=10).lr_factor(5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="amp"):
        FitConfig(amp="fp8")
    with pytest.raises(ValueError, match="validation"):
        FitConfig(validation="novel")


def test_head_without_embedding_cannot_use_maml(data):
    head = H.create("concat", data)
    learner = HeadLearner(head, data)
    batch = learner.batch(sample_episodes(data.labels, 5, 1, 2, 1, seed=0, classes=BASE))
    with pytest.raises(NotImplementedError, match="no item embedding"):
        create_trainer("maml").prepare(learner, batch)


def test_bf16_autocast_with_the_maml_family_tracks_float32(data):
    losses = {}
    for amp in (None, "bf16"):
        cfg = FitConfig(n_shot=5, n_query=5, episodes_per_step=2, steps=2, eval_every=2, val_episodes=10, progress=False, amp=amp)
        r = fit(HeadLearner(H.create("gmu", data, seed=0, hidden=16), data), create_trainer("maml", inner_steps=2), BASE, VAL, cfg)
        losses[amp] = r.history[0]["loss"]
    assert losses["bf16"] != losses[None]  # autocast was on
    assert losses["bf16"] == pytest.approx(losses[None], rel=0.05)


def test_pre_engine_backbone_checkpoints_load_or_are_refused(tmp_path):
    from safetensors.torch import save_file

    from fewmm.backbones.episodic import EpisodicConfig, load_backbone, train_protonet

    # the layout train_protonet wrote before the engine: model.* tensors, optim.* state, a JSON without "format"
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
    save_file({f"model.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "best.safetensors"))
    (tmp_path / "best.json").write_text(json.dumps({"episode": 10, "history": [], "best_val_acc": 0.5}))
    loaded = load_backbone(tmp_path / "best", nn.Sequential(nn.Flatten(), nn.Linear(16, 8)))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    for stem in ("last",):
        save_file({f"model.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / f"{stem}.safetensors"))
        (tmp_path / f"{stem}.json").write_text(json.dumps({"episode": 10, "history": [], "best_val_acc": 0.5, "optim": {}}))
    imgs = torch.randint(0, 256, (6, 4, 4, 4), dtype=torch.uint8)
    cfg = EpisodicConfig(n_way=3, n_shot=1, n_query=1, episodes=12, eval_every=6, val_way=2, val_query=1, val_episodes=2, progress=False)
    with pytest.raises(CheckpointError, match="before the engine .* start a new run in another directory"):
        train_protonet(nn.Sequential(nn.Flatten(), nn.Linear(16, 8)), imgs, imgs[:3], cfg, checkpoint_dir=tmp_path, resume=True)


def test_a_fresh_maml_trainer_evaluates_without_training(data):
    """evaluate() on a trainer that never ran loss() builds its MAML from the first batch (it raised
    AttributeError on None before; found by the fusion bench) and scores the same as one prepared
    by hand; its inner steps are the evaluation ones, then put back."""
    eps = fixed_tasks(data.labels, range(60, 100), 5, 1, 3, 6, seed=1)
    accs = []
    for prepare_first in (False, True):
        head = H.create("gmu", data, seed=3, hidden=12, dropout=0.0)
        learner = HeadLearner(head, data)
        tr = create_trainer("fomaml", inner_lr=0.1, inner_steps=1, eval_inner_steps=3)
        if prepare_first:
            tr.prepare(learner, learner.batch(eps[0:1]))
        acc = tr.evaluate(learner, eps)
        assert acc.shape == (6,) and tr.maml.inner_steps == 1
        accs.append(acc)
    np.testing.assert_array_equal(accs[0], accs[1])


@pytest.mark.parametrize("trainer", ["fomaml", "anil", "metasgd"])
def test_maml_family_evaluates_a_way_other_than_the_training_way(data, trainer):
    """A split with fewer classes than the training way (the fusion bench: 3-way training, 2-way
    validation) is evaluated from the same meta-learned head, its classifier starting from the
    support prototypes with a zero offset (it raised "built for 3-way tasks, got 2-way" before).
    Independent reference: a fresh trainer whose first (only) way is the evaluation way, on a copy
    of the same head — the same-way path the learn2learn oracle tests check."""
    import copy

    head = H.create("gmu", data, seed=3, hidden=12, dropout=0.0)
    learner = HeadLearner(head, data)
    tr = create_trainer(trainer, inner_lr=0.3, inner_steps=1, eval_inner_steps=2)
    train = fixed_tasks(data.labels, BASE, 3, 1, 2, 4, seed=0)
    tr.prepare(learner, learner.batch(train[0:2]))  # builds the MAML (and Meta-SGD's rates) for 3-way tasks
    opt = torch.optim.Adam(list(head.parameters()) + tr.parameters(), lr=1e-2)
    for i in range(2):  # a little meta-training, so the head is not its initialisation
        opt.zero_grad()
        tr.loss(learner, learner.batch(train[2 * i : 2 * i + 2]))[0].backward()
        opt.step()
    three = fixed_tasks(data.labels, VAL, 3, 1, 3, 5, seed=1)
    two = fixed_tasks(data.labels, VAL, 2, 2, 3, 7, seed=2)
    acc3 = tr.evaluate(learner, three)
    acc2 = tr.evaluate(learner, two)
    assert acc2.shape == (7,) and tr.maml.inner_steps == 1
    np.testing.assert_array_equal(tr.evaluate(learner, three), acc3)  # the training-way module is untouched
    ref_head = copy.deepcopy(head)
    ref = create_trainer(trainer, inner_lr=0.3, inner_steps=1, eval_inner_steps=2)
    ref_learner = HeadLearner(ref_head, data)
    ref.prepare(ref_learner, ref_learner.batch(two[0:1]))
    if trainer == "metasgd":  # rates learned on 3-way tasks: the head's shared, the classifier's averaged over classes
        with torch.no_grad():
            for new, old in zip(ref.maml.lrs, tr.maml.lrs):
                new.copy_(old if new.shape == old.shape else old.mean(0, keepdim=True).expand_as(new))
        assert not torch.equal(tr.maml.lrs[-1], torch.full_like(tr.maml.lrs[-1], 0.3))  # they did learn
    np.testing.assert_allclose(ref.evaluate(ref_learner, two), acc2, atol=1e-12)
    assert acc2.min() >= 0.0 and acc2.max() <= 1.0 and len(set(acc2.tolist())) > 1  # real per-episode accuracies
    with pytest.raises(EpisodeError, match="must keep one way"):  # training on another way is refused, clearly
        tr.loss(learner, learner.batch(two[0:1]))


def test_readme_engine_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """The python block of README "The episodic engine" runs as written (found by a fresh-user review:
    it used names it never defined). Measured: best validation 0.600, novel 5-way 1-shot 0.582 (chance
    0.2); the floor 0.45 leaves room for float differences across thread counts."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if 'create_trainer("anil"' in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    best, acc = map(float, capsys.readouterr().out.split())
    assert 0.45 <= acc <= 1.0 and 0.45 <= best <= 1.0
    assert (tmp_path / "runs" / "gmu-anil" / "best.json").exists()


def test_optimizer_field_adamw_and_resume_from_a_checkpoint_written_before_it(data, tmp_path):
    """FitConfig.optimizer="adamw" is torch's AdamW (decoupled decay: different weights from Adam
    with the same weight_decay); a last.json written before the field existed (no "optimizer"
    key) resumes as "adam", its default then, while a changed optimizer is refused."""
    cfg = FitConfig(n_shot=1, n_query=5, episodes_per_step=2, steps=4, eval_every=2, val_episodes=10, lr=1e-2,
                    weight_decay=0.5, progress=False)

    def run(**kw):
        return fit(HeadLearner(H.create("gmu", data, seed=0, hidden=16), data), create_trainer("protonet"), BASE, VAL, cfg, **kw)

    adam, adamw = run(), run(optimizer="adamw")
    assert any(not torch.equal(v, adamw.final_state[k]) for k, v in adam.final_state.items())
    with pytest.raises(ValueError, match="optimizer must be one of"):
        FitConfig(optimizer="sgd")
    run(checkpoint_dir=tmp_path / "b", steps=2)
    last = tmp_path / "b" / "last.json"
    doc = json.loads(last.read_text())
    del doc["run"]["config"]["optimizer"]  # as written before the field existed
    last.write_text(json.dumps(doc))
    resumed = run(checkpoint_dir=tmp_path / "b", resume=True)
    for k, v in adam.final_state.items():
        assert torch.equal(v, resumed.final_state[k]), k
    with pytest.raises(CheckpointError, match="optimizer='adam'|optimizer=None"):
        run(checkpoint_dir=tmp_path / "b", resume=True, optimizer="adamw")
