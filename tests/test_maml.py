"""fewmm.meta: MAML / first-order MAML / ANIL / Meta-SGD against learn2learn, Gram path against the
functional path, the FewShotMethod adapter, and bad input.

All exactness checks run in float64 and assert agreement within 1e-5 (observed: ~1e-16).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewmm.errors import FeatureError
from fewmm.meta import MAML, MAMLClassifier, episode_tensors, meta_train

TOL = 1e-5
T, S, Q, D, H, N = 3, 10, 15, 12, 7, 5
LR, STEPS = 0.3, 3


def _l2l():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("learn2learn")


@pytest.fixture(scope="module")
def tasks():
    g = torch.Generator().manual_seed(0)
    sx = torch.randn(T, S, D, generator=g, dtype=torch.float64)
    qx = torch.randn(T, Q, D, generator=g, dtype=torch.float64)
    sy = torch.randint(0, N, (T, S), generator=g)
    qy = torch.randint(0, N, (T, Q), generator=g)
    return sx, sy, qx, qy


def mlp(seed=1, act=nn.Tanh, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, H, bias=bias), act(), nn.Linear(H, N)).double()


class TwoBranch(nn.Module):
    """Not an nn.Sequential: a gated sum of two branches (only the functional path applies)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.a = nn.Linear(D, H)
        self.b = nn.Linear(D, H)
        self.gate = nn.Parameter(torch.tensor([0.3, -0.2]))
        self.out = nn.Linear(H, N)
        self.double()

    def forward(self, x):
        w = torch.softmax(self.gate, 0)
        return self.out(torch.tanh(w[0] * self.a(x) + w[1] * self.b(x)))


def learn2learn_reference(make_head, variant, first_order, tasks):
    """Per-task learn2learn loop: query loss, meta-gradients, adapted parameters of each task."""
    l2l = _l2l()
    sx, sy, qx, qy = tasks
    head = make_head()
    if variant == "maml":
        meta, body = l2l.algorithms.MAML(head, lr=LR, first_order=first_order), None
    elif variant == "metasgd":
        meta, body = l2l.algorithms.MetaSGD(head, lr=LR, first_order=first_order), None
    else:  # ANIL: only the last layer is wrapped
        meta, body = l2l.algorithms.MAML(head[-1], lr=LR, first_order=first_order), head[:-1]
    total, adapted = 0.0, []
    for t in range(T):
        learner = meta.clone()
        fs, fq = (body(sx[t]), body(qx[t])) if body is not None else (sx[t], qx[t])
        for _ in range(STEPS):
            learner.adapt(F.cross_entropy(learner(fs), sy[t]))
        total = total + F.cross_entropy(learner(fq), qy[t])
        mod = learner.module if variant == "metasgd" else learner
        adapted.append([p.detach().clone() for p in mod.parameters()])
    loss = total / T
    loss.backward()
    grads = {f"head.{n}": p.grad.clone() for n, p in head.named_parameters()}
    if variant == "metasgd":
        grads.update({f"lrs.{i}": p.grad.clone() for i, p in enumerate(meta.lrs)})
    return float(loss.detach()), grads, adapted


def fewmm_run(make_head, tasks, **kw):
    sx, sy, qx, qy = tasks
    maml = MAML(make_head(), inner_lr=LR, inner_steps=STEPS, feature_norm=None, **kw)
    loss, acc = maml.meta_loss(sx, sy, qx, qy)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in maml.named_parameters()}
    path = maml.path_
    params = maml.adapt(sx, sy)
    logits = maml.predict_logits(params, qx)
    return maml, float(loss.detach()), grads, params, logits, path


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b), (sorted(a), sorted(b))
    return max(float((a[k] - b[k]).detach().abs().max()) for k in a)


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize(
    "variant,path,expected",
    [
        ("maml", "auto", "gram"),
        ("maml", "functional", "functional"),
        ("anil", "auto", "gram"),
        ("anil", "functional", "functional"),
        ("metasgd", "auto", "functional"),
    ],
)
def test_matches_learn2learn(tasks, variant, path, expected, first_order):
    ref_loss, ref_grads, ref_adapted = learn2learn_reference(mlp, variant, first_order, tasks)
    maml, loss, grads, params, _, ran = fewmm_run(mlp, tasks, variant=variant, path=path, first_order=first_order)
    assert ran == expected
    assert abs(loss - ref_loss) < TOL
    assert max_diff(grads, ref_grads) < TOL
    names = [n for n, _ in maml.head.named_parameters()]
    if variant == "anil":
        names = names[-2:]
    for t in range(T):
        for i, n in enumerate(names):
            assert float((params[n][t].detach() - ref_adapted[t][i]).abs().max()) < TOL, (n, t)


def test_generic_module_matches_learn2learn(tasks):
    ref_loss, ref_grads, _ = learn2learn_reference(TwoBranch, "maml", False, tasks)
    maml, loss, grads, *_, ran = fewmm_run(TwoBranch, tasks)
    assert ran == "functional"
    assert abs(loss - ref_loss) < TOL and max_diff(grads, ref_grads) < TOL


def _heads():
    torch.manual_seed(3)
    return {
        "mlp-relu": lambda: mlp(act=nn.ReLU),
        "mlp-nobias": lambda: mlp(bias=False),
        "linear": lambda: (torch.manual_seed(4), nn.Linear(D, N).double())[1],
        "nested-deep": lambda: (
            torch.manual_seed(5),
            nn.Sequential(nn.Sequential(nn.Linear(D, H), nn.GELU()), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, N)).double(),
        )[1],
        "layernorm-rest": lambda: (  # a rest that is not bmm-simple runs through vmap(functional_call)
            torch.manual_seed(6),
            nn.Sequential(nn.Linear(D, H), nn.LayerNorm(H), nn.ReLU(), nn.Linear(H, N)).double(),
        )[1],
    }


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("variant", ["maml", "anil"])
@pytest.mark.parametrize("head", list(_heads()))
def test_gram_equals_functional(tasks, head, variant, first_order):
    make = _heads()[head]
    out = {}
    for path in ("gram", "functional"):
        maml, loss, grads, params, logits, ran = fewmm_run(make, tasks, variant=variant, path=path, first_order=first_order)
        assert ran == path
        sx, sy, qx, qy = tasks
        internal = maml._query_logits(maml._inner(sx, sy, track=False), qx)  # the unmaterialised logits
        out[path] = (loss, grads, params, logits, internal.detach())
    (l1, g1, p1, z1, i1), (l2, g2, p2, z2, i2) = out["gram"], out["functional"]
    assert abs(l1 - l2) < TOL
    assert max_diff(g1, g2) < TOL
    assert max_diff(p1, p2) < TOL
    assert float((z1 - z2).detach().abs().max()) < TOL
    assert float((i1 - z2).detach().abs().max()) < TOL and float((i2 - z2).detach().abs().max()) < TOL


def test_gram_with_l2_normalisation_and_float32(tasks):
    sx, sy, qx, qy = (t.float() if t.is_floating_point() else t for t in tasks)
    res = []
    for path in ("gram", "functional"):
        torch.manual_seed(7)
        m = MAML(nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, N)), inner_lr=0.5, inner_steps=5, path=path)
        loss, acc = m.meta_loss(sx * 40.0, sy, qx * 40.0, qy)  # large norms: normalised away
        loss.backward()
        res.append((float(loss.detach()), {n: p.grad for n, p in m.named_parameters()}))
    assert abs(res[0][0] - res[1][0]) < 1e-5
    assert max_diff(res[0][1], res[1][1]) < 1e-5


def test_path_selection_and_errors():
    assert MAML(mlp(), variant="metasgd").path_ == "functional"
    assert MAML(TwoBranch()).path_ == "functional"
    assert MAML(mlp()).path_ == "gram"
    with pytest.raises(ValueError, match="Meta-SGD"):
        MAML(mlp(), variant="metasgd", path="gram")
    with pytest.raises(ValueError, match="first"):
        MAML(TwoBranch(), path="gram")
    with pytest.raises(ValueError, match="variant"):
        MAML(mlp(), variant="reptile")
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(mlp(), inner_steps=0)


def test_adapt_without_grad_and_inference_mode(tasks):
    sx, sy, qx, qy = tasks
    m = MAML(mlp(), inner_lr=LR, inner_steps=STEPS)
    with torch.no_grad():
        p = m.adapt(sx, sy)
        loss, acc = m.meta_loss(sx, sy, qx, qy)
    assert all(not v.requires_grad for v in p.values())
    assert not loss.requires_grad
    with torch.inference_mode():
        loss2, _ = m.meta_loss(sx, sy, qx, qy)
    assert abs(float(loss) - float(loss2)) < 1e-12
    assert all(p.grad is None for p in m.parameters())


def test_bad_input(tasks):
    sx, sy, qx, qy = tasks
    m = MAML(mlp())
    with pytest.raises(FeatureError, match="query_x.*dim"):
        m.meta_loss(sx, sy, qx[..., :-1], qy)
    with pytest.raises(FeatureError, match="support_x.*first layer expects"):
        m.meta_loss(sx[..., :-1], sy, qx[..., :-1], qy)
    with pytest.raises(FeatureError, match="support_y.*0..4"):
        m.meta_loss(sx, sy + 1, qx, qy)
    with pytest.raises(FeatureError, match="query_y.*0..4"):
        m.meta_loss(sx, sy, qx, qy - 1)
    bad = sx.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(FeatureError, match="support_x.*NaN.*task 1, item 2"):
        m.meta_loss(bad, sy, qx, qy)
    badq = qx.clone()
    badq[0, 0, 0] = float("inf")
    with pytest.raises(FeatureError, match="query_x.*NaN or inf"):
        m.meta_loss(sx, sy, badq, qy)
    with pytest.raises(FeatureError, match="support_y.*integer"):
        m.meta_loss(sx, sy.double(), qx, qy)
    with pytest.raises(FeatureError, match="support_y.*shape"):
        m.meta_loss(sx, sy[:, :-1], qx, qy)
    with pytest.raises(FeatureError, match="query_x.*tasks"):
        m.meta_loss(sx, sy, qx[:2], qy[:2])
    # a head that is not Sequential: the label range is found by one forward
    with pytest.raises(FeatureError, match="support_y"):
        MAML(TwoBranch()).meta_loss(sx, sy + 5, qx, qy)
    assert issubclass(FeatureError, ValueError)


def clusters(n_classes=12, per_class=24, dim=D, seed=0, spread=0.6):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_classes, dim))
    x = means.repeat(per_class, 0) + spread * rng.normal(size=(n_classes * per_class, dim))
    return torch.as_tensor(x, dtype=torch.float32), np.arange(n_classes).repeat(per_class)


def test_classifier_contract_and_batched_episodes():
    from fewmm.episodes import sample_episodes
    from fewmm.evaluate import evaluate_episodes

    x, y = clusters()
    torch.manual_seed(0)
    maml = MAML(nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Linear(16, N)), inner_lr=0.5, inner_steps=5)
    clf = MAMLClassifier(maml)
    idx = np.r_[0:3, 24:27, 48:51, 72:75, 96:99]
    clf.fit(x[idx], y[idx] + 100)  # any labels: encoded to 0..C-1
    proba = clf.predict_proba(x[:40])
    assert proba.shape == (40, 5) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(clf.predict(x[:40])) <= set(clf.classes_)
    eps = sample_episodes(y, n_way=N, n_shot=2, n_query=3, n_episodes=6, seed=1)
    feats = clf.transform_features(x)
    sx, sy, qx, qy = episode_tensors(feats, eps.support, eps.query)
    batched = clf.episode_logits(sx.reshape(6, N, 2, D), qx)
    assert maml.path_ == "gram"
    for e in range(6):  # one episode at a time through the fit/predict contract
        clf.fit(x[eps.support[e].reshape(-1)], sy[e].numpy())
        single = clf.decision_function(x[eps.query[e].reshape(-1)])  # (n_query, 5): numpy
        assert float(np.abs(single - batched[e].numpy()).max()) < 1e-4
    acc = evaluate_episodes(clf, x, eps, chunk_size=4)  # runs under torch.inference_mode
    assert acc.shape == (6,) and np.all((acc >= 0) & (acc <= 1))
    with pytest.raises(FeatureError, match="classes"):
        clf.fit(x[:70], np.arange(70) % 7)  # 7 classes, 5 outputs


def test_meta_training_learns_and_is_deterministic():
    x, y = clusters(n_classes=16, per_class=20, spread=0.8)

    def run():
        torch.manual_seed(0)
        maml = MAML(nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, N)), inner_lr=0.5, inner_steps=2)
        hist = meta_train(maml, x, y, n_way=N, n_shot=1, n_query=5, meta_batch=8, steps=40, outer_lr=3e-3, seed=0)
        return hist

    h1, h2 = run(), run()
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2]
    assert [r["step"] for r in h1] == list(range(1, 41))  # the engine's history: one entry per meta-update
    first = np.mean([r["train_acc"] for r in h1[:5]])
    last = np.mean([r["train_acc"] for r in h1[-5:]])
    assert last > first + 0.1, (first, last)


def test_force_vmap_and_deepcopy(tasks):
    import copy

    sx, sy, qx, qy = tasks
    ref = MAML(mlp(), inner_lr=LR, inner_steps=STEPS, feature_norm=None)
    vm = MAML(mlp(), inner_lr=LR, inner_steps=STEPS, feature_norm=None, path="functional", force_vmap=True)
    assert not vm._runner.simple
    out = []
    for m in (ref, vm):
        loss, _ = m.meta_loss(sx, sy, qx, qy)
        loss.backward()
        out.append((float(loss.detach()), {n: p.grad for n, p in m.named_parameters()}))
    assert abs(out[0][0] - out[1][0]) < TOL and max_diff(out[0][1], out[1][1]) < TOL
    # a deep copy adapts its own head, not the original's
    twin = copy.deepcopy(MAML(TwoBranch(), inner_lr=LR, inner_steps=STEPS, feature_norm=None))
    orig = MAML(TwoBranch(), inner_lr=LR, inner_steps=STEPS, feature_norm=None)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.1)
        a = orig.predict_logits(orig.adapt(sx, sy), qx)
        b = twin.predict_logits(twin.adapt(sx, sy), qx)
    assert float((a - b).abs().max()) > 1e-3


class GMU(nn.Module):
    """Gated multimodal unit over two halves of the features: only nn.Linear parameters, not an
    nn.Sequential, so the general path runs it with low-rank adapted layers."""

    def __init__(self, seed=7):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b = nn.Linear(D // 2, H), nn.Linear(D - D // 2, H)
        self.gate, self.out = nn.Linear(D, H), nn.Linear(H, N)
        self.double()

    def forward(self, x):
        z = torch.sigmoid(self.gate(x))
        return self.out(z * torch.tanh(self.a(x[..., : D // 2])) + (1 - z) * torch.tanh(self.b(x[..., D // 2 :])))


class ItemCentred(nn.Module):
    """Centres the items of a task (mean over dim 0): run on a (T, n, d) batch at once it would mix
    tasks, so the low-rank path must refuse it and fall back to per-task parameters."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.l1, self.l2 = nn.Linear(D, H), nn.Linear(H, N)
        self.double()

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x - x.mean(0))))


class DirectWeight(nn.Module):
    """Reads its last layer's weight directly (``x @ l2.weight.T``), as the engine's Proto-MAML
    classifier does: the low-rank path, which patches ``nn.Linear.forward``, would keep the
    un-adapted weight there (found at the merge of the engine and the low-rank path), so it must
    fall back to dense per-task parameters."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(9)
        self.l1, self.l2 = nn.Linear(D, H), nn.Linear(H, N)
        self.double()

    def forward(self, x):
        return torch.tanh(self.l1(x)) @ self.l2.weight.T + self.l2.bias


class DroppedGMU(GMU):
    """GMU with dropout before its output layer (train mode)."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        z = torch.sigmoid(self.gate(x))
        return self.out(self.drop(z * torch.tanh(self.a(x[..., : D // 2])) + (1 - z) * torch.tanh(self.b(x[..., D // 2 :]))))


def test_lowrank_check_draws_nothing_from_the_global_rng_and_ignores_dropout(tasks):
    """The first-call batch-equivalence check runs with element-wise dropout off (dropout is
    batch-equivalent by construction) and inside a forked RNG: the global random stream after it
    is the one before it (exact resume of a run that calls it again)."""
    sx, sy, _, _ = tasks
    m = MAML(DroppedGMU(), inner_lr=LR, inner_steps=STEPS, feature_norm=None, path="functional")
    torch.manual_seed(123)
    ok = m._lowrank.batch_equivalent(sx)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert ok and torch.equal(after, torch.rand(3))
    assert m.head.drop.training  # put back in train mode


def _inplace_relu():
    torch.manual_seed(9)
    return nn.Sequential(nn.Linear(D, H), nn.ReLU(inplace=True), nn.Linear(H, N)).double()


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize(
    "make,impl",
    [(GMU, "lowrank"), (mlp, "lowrank"), (ItemCentred, "vmap"), (_inplace_relu, "bmm"), (DirectWeight, "vmap")],
    ids=["gmu", "mlp", "mixes-tasks", "inplace-relu", "reads-weight-directly"],
)
def test_general_path_impl_matches_learn2learn(tasks, make, impl, first_order):
    """The general path's implementations (low-rank linears; dense per-task parameters where the
    head is not batch-equivalent or edits a layer output in place): losses, meta-gradients and
    adapted parameters equal learn2learn's per-task loop within 1e-5."""
    ref_loss, ref_grads, ref_adapted = learn2learn_reference(make, "maml", first_order, tasks)
    maml, loss, grads, params, logits, ran = fewmm_run(make, tasks, path="functional", first_order=first_order)
    assert (ran, maml.functional_impl_) == ("functional", impl)
    assert abs(loss - ref_loss) < TOL and max_diff(grads, ref_grads) < TOL
    names = [n for n, _ in maml.head.named_parameters()]
    for t in range(T):
        for i, n in enumerate(names):
            assert float((params[n][t].detach() - ref_adapted[t][i]).abs().max()) < TOL, (n, t)
    # the unmaterialised logits equal those of the materialised per-task parameters
    sx, sy, qx, _ = tasks
    internal = maml._query_logits(maml._inner(sx, sy, track=False), qx)
    assert float((internal.detach() - logits.detach()).abs().max()) < TOL
    assert not any("forward" in m.__dict__ for m in maml.head.modules())  # the patched forwards are removed again


def test_lowrank_anil_matches_dense(tasks):
    """ANIL on the general path: low-rank last layer == dense per-task parameters (vmap)."""
    sx, sy, qx, qy = tasks
    out = []
    for kw in ({}, {"force_vmap": True}):
        m = MAML(GMU(), inner_lr=LR, inner_steps=STEPS, feature_norm=None, variant="anil", **kw)
        loss, _ = m.meta_loss(sx, sy, qx, qy)
        loss.backward()
        out.append((m.functional_impl_, float(loss.detach()), {n: p.grad for n, p in m.named_parameters()}))
    assert (out[0][0], out[1][0]) == ("lowrank", "vmap")
    assert abs(out[0][1] - out[1][1]) < TOL and max_diff(out[0][2], out[1][2]) < TOL


@pytest.mark.parametrize("variant", ["maml", "anil", "metasgd"])
def test_persist_round_trip_is_exact(tmp_path, variant):
    """fewmm.persist saves a MAML (head + config + Meta-SGD's rates) without pickle; the loaded one
    adapts and predicts bit for bit like the saved one."""
    from fewmm import persist

    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    head = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    m = MAML(head, inner_lr=0.3, inner_steps=2, variant=variant, feature_norm=None)
    if variant == "metasgd":  # learned rates differ from the initial inner_lr: the state dict must carry them
        with torch.no_grad():
            for p in m.lrs:
                p.copy_(torch.rand(p.shape, generator=g))
    sx, sy = torch.randn(2, 6, 8, generator=g), torch.tensor([[0, 1, 2, 0, 1, 2]] * 2)
    qx = torch.randn(2, 4, 8, generator=g)
    want = m.predict_logits(m.adapt(sx, sy, differentiable=False), qx)
    m2 = persist.load(persist.save(m, tmp_path / "m"))
    assert type(m2) is MAML and m2.config() == m.config()
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(m2.predict_logits(m2.adapt(sx, sy, differentiable=False), qx), want)
