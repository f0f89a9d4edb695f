"""Meta-trained methods (maml, anil, metasgd, protonet-head) as few-shot methods and in the
harness: adaptation against a plain-torch reference, meta-training on base classes helps on novel
ones, the seeded class-disjoint base split, and `python -m fewmm.bench` with a base split
recorded in the results."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fewmm.methods as M
from fewmm.bench.cli import main as bench_main
from fewmm.episodes import class_disjoint_split, sample_episodes
from fewmm.errors import EpisodeError, FeatureError
from fewmm.evaluate import evaluate_episodes
from fewmm.methods.base import l2_normalize


def clusters(n_classes, per_class, dim, seed, spread=0.6):
    """Gaussian clusters around random unit centres: features (n, dim) float32, labels (n,)."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_classes, dim, generator=g), dim=1) * 2.0
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y.numpy()


def test_registry_lists_the_meta_trained_methods():
    assert M.meta_trained_methods() == ["anil", "maml", "metasgd", "protonet-head"]
    assert [M.create(n).variant for n in ("maml", "anil", "metasgd")] == ["maml", "anil", "metasgd"]


def test_class_disjoint_split_exact_and_disjoint():
    base, novel = class_disjoint_split(np.arange(10), seed=0)
    # measured once (numpy default_rng(0).permutation(10)); the digits run of the README uses it
    assert base.tolist() == [2, 3, 4, 6, 7] and novel.tolist() == [0, 1, 5, 8, 9]
    b2, n2 = class_disjoint_split([5, 3, 3, 9, 1, 7, 0], seed=4, base_fraction=0.3)
    assert len(b2) == 2 and len(n2) == 4  # round(0.3 * 6) = 2 base classes of the 6 distinct
    assert set(b2) | set(n2) == {0, 1, 3, 5, 7, 9} and not set(b2) & set(n2)
    assert class_disjoint_split(np.arange(10), seed=1)[0].tolist() != base.tolist()
    with pytest.raises(EpisodeError, match="at least 2 classes"):
        class_disjoint_split([3], seed=0)
    with pytest.raises(EpisodeError, match="base_fraction"):
        class_disjoint_split(np.arange(4), base_fraction=1.0)


@pytest.mark.parametrize("variant", ["maml", "anil", "metasgd"])
def test_maml_method_adapts_like_a_plain_torch_inner_loop(variant):
    """Per-episode logits = a hand-written inner loop on a copy of the head (SGD on the support
    cross-entropy, `inner_steps` steps of `inner_lr`; ANIL: last layer only), then the query logits."""
    x, y = clusters(8, 12, 6, seed=1)
    m = M.create(variant, hidden=16, n_way=4, n_shot=2, n_query=3, meta_batch=4, steps=3, inner_steps=3, inner_lr=0.4)
    m.fit_base(x[: 6 * 12], y[: 6 * 12])
    assert m.base_info_["meta_trained"] and m.base_info_["n_base_classes"] == 6 and m.base_info_["steps"] == 3
    sx = l2_normalize(torch.cat([x[6 * 12 : 6 * 12 + 2], x[7 * 12 : 7 * 12 + 2]]))  # 2-way 2-shot, class-major
    sy = torch.tensor([0, 0, 1, 1])
    qx = l2_normalize(torch.cat([x[6 * 12 + 5 : 6 * 12 + 8], x[7 * 12 + 5 : 7 * 12 + 8]]))
    maml = m.base_model_
    head = copy.deepcopy(maml.head)
    names = [n for n, _ in head.named_parameters()]
    adapted = names[-2:] if variant == "anil" else names
    lrs = dict(zip(names, [lr.detach() for lr in maml.lrs])) if variant == "metasgd" else {n: 0.4 for n in names}
    params = {n: p.detach().clone() for n, p in head.named_parameters()}
    for _ in range(3):
        ps = {n: p.requires_grad_(n in adapted) for n, p in params.items()}
        loss = F.cross_entropy(torch.func.functional_call(head, ps, (sx,))[:, :4], sy)
        grads = torch.autograd.grad(loss, [ps[n] for n in adapted])
        params = {n: (ps[n] - lrs[n] * grads[adapted.index(n)] if n in adapted else ps[n]).detach() for n in names}
    want = torch.func.functional_call(head, params, (qx,))[:, :2]
    got = m.episode_logits(sx.reshape(1, 2, 2, -1), qx.unsqueeze(0))[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # the scikit-learn path (fit / decision_function) scores the same
    m.fit(torch.cat([x[6 * 12 : 6 * 12 + 2], x[7 * 12 : 7 * 12 + 2]]), np.array(["a", "a", "b", "b"]))
    proba = m.predict_proba(torch.cat([x[6 * 12 + 5 : 6 * 12 + 8], x[7 * 12 + 5 : 7 * 12 + 8]]))
    np.testing.assert_allclose(proba, torch.softmax(want, 1).numpy(), rtol=1e-4, atol=1e-5)


def test_protonet_head_scores_like_prototypes_in_the_embedding():
    x, y = clusters(8, 10, 6, seed=2)
    m = M.create("protonet-head", hidden=16, out_dim=8, steps=4, meta_batch=2, n_query=3).fit_base(x[:60], y[:60])
    emb = m.base_model_
    s, q = l2_normalize(x[60:80]), l2_normalize(x[::7])
    with torch.no_grad():
        zs, zq = emb(s), emb(q)
        protos = torch.stack([zs[:10].mean(0), zs[10:].mean(0)])
        want = -torch.cdist(zq, protos) ** 2
    got = m.episode_logits(s.reshape(1, 2, 10, -1), q.unsqueeze(0))[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,kw,measured", [
    ("maml", dict(first_order=True, inner_lr=1.0, outer_lr=1e-2), (0.654, 0.509)),
    ("protonet-head", dict(outer_lr=1e-2), (0.699, 0.517)),
])
def test_meta_training_on_base_classes_helps_on_novel_classes(name, kw, measured):
    """Class signal in 4 of 32 dims (the other 28 are noise): meta-training on the 16 base classes
    must beat the same head at its seeded random initialisation on 5-way 1-shot episodes of the 8
    novel classes. Measured (seed 3 data, seed 0 episodes; `measured` = trained, fresh): the floor
    asks for half the measured gain (BLAS rounding across machines changes training slightly)."""
    g = torch.Generator().manual_seed(3)
    c = torch.randn(24, 4, generator=g)
    y = torch.arange(24).repeat_interleave(12)
    x = torch.cat([c[y] + 0.3 * torch.randn(len(y), 4, generator=g), 0.3 * torch.randn(len(y), 28, generator=g)], 1)
    y = y.numpy()
    base = y < 16
    eps = sample_episodes(y, 5, 1, 5, 40, seed=0, classes=np.arange(16, 24))
    kw = dict(hidden=32, n_way=5, n_shot=1, n_query=5, meta_batch=4, steps=100, **kw)
    trained = M.create(name, **kw).fit_base(x[base], y[base])
    acc_t = float(np.mean(evaluate_episodes(trained, x, eps)))
    acc_f = float(np.mean(evaluate_episodes(M.create(name, **kw), x, eps)))
    assert acc_t - acc_f > (measured[0] - measured[1]) / 2, (acc_t, acc_f)
    assert trained.base_info_["steps"] == 100 and trained.base_info_["n_base_classes"] == 16


def test_meta_methods_say_what_is_wrong():
    x, y = clusters(6, 6, 4, seed=4)
    m = M.create("maml", hidden=8, n_way=3, n_shot=1, n_query=2, meta_batch=2, steps=2)
    with pytest.raises(FeatureError, match="needs base_labels"):
        m.fit_base(x)
    m.fit_base(x, y)
    with pytest.raises(FeatureError, match="meta-trained with 3-way episodes .* set n_way >= 4"):
        m.fit(x[:8], [0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(FeatureError, match="features have dim 5, but MAMLMethod was meta-trained on base features of dim 4"):
        m.fit(torch.randn(4, 5), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="variant='anil' needs hidden >= 1"):
        M.create("anil", hidden=0)
    with pytest.raises(ValueError, match="inner_steps must be an integer >= 1"):
        M.create("metasgd", inner_steps=0)
    with pytest.raises(EpisodeError):  # 3 base classes cannot make 5-way training episodes
        M.create("protonet-head", n_way=5, steps=1).fit_base(x[:18], y[:18])


@pytest.fixture
def tiny_meta_methods():
    """Registered copies of maml / anil / protonet-head with few meta-training steps (the harness
    uses each method's defaults)."""
    names = {"maml-tiny": ("maml", {}), "anil-tiny": ("anil", {}), "protonet-head-tiny": ("protonet-head", {})}
    for new, (old, kw) in names.items():
        def factory(_old=old, **k):
            return M.create(_old, **{"hidden": 32, "steps": 5, "meta_batch": 4, **k})

        factory.needs_base_labels = True
        M.register(new, f"{old}, 5 meta-training steps (test)")(factory)
    yield list(names)
    for new in names:
        M.METHODS.unregister(new)


def test_bench_runs_meta_methods_on_a_seeded_base_split(tmp_path, tiny_meta_methods, capsys):
    """digits has no base split: half of its classes (seeded) become base classes, every method of
    the row is evaluated on the same novel-class episodes, and the split is in the results."""
    rc = bench_main(["--dataset", "digits", "--encoder", "pixels", "--methods", "protonet,simpleshot," + ",".join(tiny_meta_methods),
                     "--shots", "1", "--episodes", "20", "--out", str(tmp_path), "--name", "r", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "r.json").read_text())
    split = doc["datasets"]["digits"]["base_split"]
    assert split["base_classes"] == ["2", "3", "4", "6", "7"] and split["novel_classes"] == ["0", "1", "5", "8", "9"]
    assert doc["datasets"]["digits"]["base"] == "seeded class-disjoint split of digits"
    rows = {r["method"]: r for r in doc["results"]}
    assert {r["n_classes"] for r in rows.values()} == {5}  # episodes of the 5 novel classes only
    assert "novel classes of a seeded class-disjoint split (seed 0)" in rows["protonet"]["notes"]
    assert rows["maml-tiny"]["notes"].startswith("meta-trained on a seeded class-disjoint split")
    tr = doc["meta_training"]["digits/pixels/maml-tiny"]
    assert tr["n_base_classes"] == 5 and tr["steps"] == 5 and tr["hyper_parameters"]["n_way"] == 5
    from sklearn.datasets import load_digits

    assert tr["n_base_items"] == int(np.isin(load_digits().target, [2, 3, 4, 6, 7]).sum())
    # same episodes: the paired differences of every method are to protonet on identical episodes
    assert all(rows[m]["paired_ref"] == "protonet" for m in rows if m != "protonet")
    # protonet on the novel classes of digits, 20 episodes, seed 0: measured exactly (deterministic)
    assert rows["protonet"]["episodes"] == 20


def test_bench_without_meta_methods_is_unchanged(tmp_path):
    """No meta-trained method: no base split is made, episodes use every class as before."""
    assert bench_main(["--dataset", "digits", "--encoder", "pixels", "--methods", "protonet", "--shots", "1",
                       "--episodes", "5", "--out", str(tmp_path), "--name", "r", "--quiet"]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert "base_split" not in doc["datasets"]["digits"] and "meta_training" not in doc
    assert doc["results"][0]["n_classes"] == 10


def test_base_equal_to_the_evaluated_data_set_is_refused(tmp_path, capsys):
    """--base digits on --dataset digits would meta-train on the test classes (found by a fresh-user
    review: ANIL scored 81 against about 40 on a class-disjoint split, with no warning)."""
    rc = bench_main(["--dataset", "digits", "--encoder", "pixels", "--methods", "protonet,anil", "--shots", "1",
                     "--episodes", "5", "--base", "digits", "--out", str(tmp_path), "--name", "r", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--base digits is the evaluated data set itself" in err and "class-disjoint" in err
    assert not (tmp_path / "r.json").exists()


# -- exact contract of the meta-trained methods ------------------------------------------------------
# Found by mutation testing (`python benchmarks/mutation.py methods`): the tests below pin the
# defaults, the checks and their messages, the meta-training calls and the bookkeeping of fit_base
# that the tests above only reached; the mutants each one kills are named in its docstring. All run
# on tiny synthetic features with a few meta-steps (they run once per mutant).

META_DEFAULTS = dict(hidden=256, n_way=5, n_shot=1, n_query=10, meta_batch=8, steps=100, outer_lr=1e-3, seed=0)
MAML_DEFAULTS = dict(variant="maml", inner_lr=0.5, inner_steps=5, first_order=False)


def test_meta_methods_defaults_and_every_hyper_parameter_reaches_the_method():
    """The documented defaults, of the methods and of the base class for new meta-trained methods
    (a subclass that keeps MetaTrainedMethod.__init__: mutants of its defaults), and every
    hyper-parameter given to maml/anil/metasgd/protonet-head is stored (mutants that drop one from
    the super().__init__ calls of MAMLMethod and ProtoNetHead leave the default instead)."""

    class Bare(M.MetaTrainedMethod):  # a new meta-trained method that keeps the base class's hyper-parameters
        pass

    assert Bare().get_params() == META_DEFAULTS
    for v in ("maml", "anil", "metasgd"):
        assert M.create(v).get_params() == {**MAML_DEFAULTS, "variant": v, **META_DEFAULTS}
    assert M.create("protonet-head").get_params() == {"out_dim": 128, **META_DEFAULTS}
    kw = dict(hidden=3, n_way=4, n_shot=2, n_query=6, meta_batch=7, steps=9, outer_lr=0.25, seed=11)  # none a default
    assert M.create("metasgd", **kw).get_params() == {**MAML_DEFAULTS, "variant": "metasgd", **kw}
    assert M.create("protonet-head", out_dim=5, **kw).get_params() == {"out_dim": 5, **kw}


@pytest.mark.parametrize("name,kw,msg", [
    ("maml", dict(hidden=-1), "hidden must be an integer >= 0, got -1"),
    ("maml", dict(n_way=1), "n_way must be an integer >= 2, got 1"),
    ("protonet-head", dict(n_shot=0), "n_shot must be an integer >= 1, got 0"),
    ("maml", dict(n_query=0), "n_query must be an integer >= 1, got 0"),
    ("maml", dict(meta_batch=0), "meta_batch must be an integer >= 1, got 0"),
    ("maml", dict(steps=0), "steps must be an integer >= 1, got 0"),
    ("maml", dict(n_shot=True), "n_shot must be an integer >= 1, got True"),
    ("maml", dict(steps=2.0), "steps must be an integer >= 1, got 2.0"),
    ("maml", dict(seed=-1), "seed must be an integer >= 0, got -1"),
    ("maml", dict(outer_lr=0), "outer_lr must be a positive finite number, got 0"),
    ("maml", dict(outer_lr=-0.5), "outer_lr must be a positive finite number, got -0.5"),
    ("maml", dict(outer_lr=float("inf")), "outer_lr must be a positive finite number, got inf"),
    ("maml", dict(outer_lr=True), "outer_lr must be a positive finite number, got True"),
    ("maml", dict(outer_lr="0.1"), "outer_lr must be a positive finite number, got '0.1'"),
    ("maml", dict(inner_lr=0.0), "inner_lr must be a positive finite number, got 0.0"),
    ("maml", dict(variant="reptile"), "variant must be 'maml', 'anil' or 'metasgd', got 'reptile'"),
    ("anil", dict(hidden=0), "variant='anil' needs hidden >= 1 (a body to reuse); with hidden=0 ANIL is MAML"),
    ("maml", dict(first_order=1), "first_order must be True or False, got 1"),
    ("protonet-head", dict(out_dim=0), "out_dim must be an integer >= 1, got 0"),
])
def test_meta_methods_name_the_bad_hyper_parameter(name, kw, msg):
    """The whole message (mutants of the names passed to check_positive_int/float, of the bounds,
    of the variant/first_order/ANIL messages; a bool, a string, inf and 0 are refused: mutants
    that turn an `or` of check_positive_float/int into `and`, or `v <= 0` into `v < 0`)."""
    with pytest.raises(ValueError) as e:
        M.create(name, **kw)
    assert str(e.value) == msg


def test_meta_methods_accept_the_boundary_values():
    """n_way=2, hidden=0 (MAML: a linear head), seed=0 and numpy scalars are valid (mutant lo=3 of n_way)."""
    m = M.create("maml", n_way=2, hidden=0, seed=0, n_shot=np.int64(1), outer_lr=np.float32(0.5))
    assert m.get_params()["n_way"] == 2


def test_mlp_without_hidden_layer_is_one_seeded_linear():
    """hidden=0: one Linear(dim, out), PyTorch's default init under manual_seed(seed), and the global
    generator left as it was (mutants of the hidden == 0 branch of mlp)."""
    from fewmm.methods.meta_base import mlp

    state = torch.random.get_rng_state()
    h = mlp(4, 0, 3, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(5)
    ref = torch.nn.Linear(4, 3)
    assert len(h) == 1 and isinstance(h[0], torch.nn.Linear) and (h[0].in_features, h[0].out_features) == (4, 3)
    assert torch.equal(h[0].weight, ref.weight) and torch.equal(h[0].bias, ref.bias)


def test_maml_fit_base_is_meta_train_on_the_normalised_base_features():
    """fit_base = fewmm.meta.meta_train of MAML(mlp(...), feature_norm=None) on the L2-normalised
    base features with every hyper-parameter passed on (mutants of MAMLMethod._build and
    _meta_train that drop one: the defaults of MAML / meta_train differ from the values here); the
    weights are equal bit for bit (same seeded task stream, same operations)."""
    from fewmm.meta import MAML, meta_train
    from fewmm.methods.meta_base import mlp

    x, y = clusters(5, 8, 6, seed=5)
    kw = dict(hidden=8, n_way=3, n_shot=2, n_query=3, meta_batch=2, steps=3, outer_lr=0.05, seed=4)
    m = M.create("maml", inner_lr=0.3, inner_steps=2, first_order=True, **kw).fit_base(x, y)
    ref = MAML(mlp(6, 8, 3, 4), inner_lr=0.3, inner_steps=2, first_order=True, variant="maml", feature_norm=None)
    hist = meta_train(ref, l2_normalize(x), y, n_way=3, n_shot=2, n_query=3, meta_batch=2, steps=3, outer_lr=0.05, seed=4)
    got, want = m.base_model_.state_dict(), ref.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert m.base_model_.first_order is True and m.base_model_.feature_norm is None and m.base_model_.inner_steps == 2
    assert m.base_info_["final_loss"] == round(float(hist[-1]["loss"]), 4) and m.base_info_["steps"] == 3


def test_protonet_head_fit_base_is_the_engine_fit_loop(capsys):
    """fit_base = fewmm.engine.fit with the protonet trainer on a TensorLearner of the L2-normalised
    base features: Adam at outer_lr, no gradient clipping, no validation, the seeded task stream,
    quietly (mutants of ProtoNetHead._meta_train that drop a FitConfig field: the defaults are
    5-way 1-shot 15-query, 8 episodes, clipping at 10, seed 0, a progress line; outer_lr=1.0 makes
    gradients large enough that the default clip of 10 changes the weights: measured). Weights equal bit for bit."""
    from fewmm.engine import FitConfig, TensorLearner, create_trainer, fit
    from fewmm.methods.meta_base import mlp

    x, y = clusters(5, 8, 6, seed=6)
    m = M.create("protonet-head", hidden=8, out_dim=4, n_way=3, n_shot=2, n_query=3, meta_batch=2, steps=4, outer_lr=1.0,
                 seed=4).fit_base(x, y)
    assert capsys.readouterr() == ("", "")  # no progress bar
    ref = mlp(6, 8, 4, 4)
    cfg = FitConfig(n_way=3, n_shot=2, n_query=3, episodes_per_step=2, steps=4, lr=1.0, grad_clip=None, validation="none",
                    eval_every=1, seed=4, progress=False)
    res = fit(TensorLearner(ref, l2_normalize(x), y), create_trainer("protonet"), np.arange(5), None, cfg, restore_best=False)
    got, want = m.base_model_.state_dict(), ref.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert m.base_info_["steps"] == 4 and m.base_info_["final_loss"] == round(float(res.history[-1]["loss"]), 4)


@pytest.mark.parametrize("n_steps,last", [(30, [27, 28, 29]), (10, [9])])
def test_fit_base_summarises_the_last_tenth_of_the_history(monkeypatch, n_steps, last):
    """base_info_ from a stand-in history and clock: the mean loss and accuracy of the last
    max(1, steps // 10) steps rounded to 4 decimals, the seconds to 1 (mutants of the slice, of the
    roundings and of the dict keys of fit_base); the stand-in gets L2-normalised features and the
    labels encoded 0..k-1 in sorted order."""
    from types import SimpleNamespace

    from fewmm.methods import meta_base

    clock = iter([100.0, 102.34])
    monkeypatch.setattr(meta_base, "time", SimpleNamespace(time=lambda: next(clock)))
    seen = {}

    def fake_meta_train(model, features, labels):
        seen.update(features=features, labels=labels)
        return [{"loss": 1 / (i + 3), "train_acc": 1 / (i + 7)} for i in range(n_steps)]

    x = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [6.0, 8.0], [0.0, -1.0], [2.0, 0.0]])
    m = M.create("maml", hidden=4, n_way=3, n_query=2, meta_batch=2)
    monkeypatch.setattr(m, "_meta_train", fake_meta_train)
    m.fit_base(x, ["c", "a", "b", "c", "a", "b"])
    torch.testing.assert_close(seen["features"], torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.0, -1.0], [1.0, 0.0]]))
    assert seen["labels"].tolist() == [2, 0, 1, 2, 0, 1]
    assert m.base_info_ == {
        "meta_trained": True, "n_base_items": 6, "n_base_classes": 3, "episodes": "3-way 1-shot 2-query, 2 per step",
        "steps": n_steps, "seconds": 2.3,
        "final_loss": round(float(np.mean([1 / (i + 3) for i in last])), 4),
        "final_accuracy": round(float(np.mean([1 / (i + 7) for i in last])), 4)}
    # hand-computed: (1/30 + 1/31 + 1/32) / 3 = 0.032280..., (1/34 + 1/35 + 1/36) / 3 = 0.028587...; 1/12, 1/16
    assert (m.base_info_["final_loss"], m.base_info_["final_accuracy"]) == ((0.0323, 0.0286) if n_steps == 30 else (0.0833, 0.0625))


def test_fit_base_says_what_is_wrong_with_its_input():
    """The whole messages, naming the class and the argument (mutants of the names passed to
    check_features/check_labels and of the missing-labels message)."""
    x, y = clusters(3, 2, 4, seed=7)
    for name, cls in (("maml", "MAMLMethod"), ("protonet-head", "ProtoNetHead")):
        with pytest.raises(FeatureError) as e:
            M.create(name).fit_base(x)
        assert str(e.value) == (f"{cls}.fit_base needs base_labels (one class per base item): the head is meta-trained on "
                                "labelled episodes of the base classes")
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(FeatureError) as e:
        M.create("maml").fit_base(bad, y)
    assert str(e.value) == "base_features contains NaN or inf values in 1 rows (first rows: [1])"
    with pytest.raises(FeatureError) as e:
        M.create("maml").fit_base(x, y[:5])
    assert str(e.value) == "base_labels has 5 labels for 6 feature rows"


def test_meta_methods_without_fit_base_say_so_and_size_the_head_to_the_support():
    """fit without fit_base: base_info_ is exactly {"meta_trained": False} and MAML's fresh head has
    one output per support class (mutants of that dict and of max(n_classes, 2)); a head
    meta-trained for 3-way episodes refuses 4 support classes, naming its class."""
    x, y = clusters(4, 3, 5, seed=8)
    m = M.create("maml", hidden=4, inner_steps=1).fit(x[:6], y[:6])
    assert m.base_info_ == {"meta_trained": False}
    assert m.model_.head[-1].out_features == 2 and m.model_.n_way() == 2
    assert M.create("protonet-head", hidden=4, out_dim=3).fit(x, y).base_info_ == {"meta_trained": False}
    m = M.create("maml", hidden=4, n_way=3, n_shot=1, n_query=1, meta_batch=1, steps=1).fit_base(x, y)
    with pytest.raises(FeatureError) as e:
        m.fit(x, y)
    assert str(e.value) == ("the support set has 4 classes, but MAMLMethod was meta-trained with 3-way episodes (its head has "
                            "3 outputs): set n_way >= 4 before fit_base")


@pytest.mark.parametrize("name", ["maml", "protonet-head"])
def test_fit_on_any_item_order_scores_as_the_class_major_episode(name, monkeypatch):
    """fit on a support whose classes are interleaved = episode_logits on the class-major support
    that keeps each class's items in the given order, bit for bit: the batched path, with a stable
    sort (mutants: argsort without stable=True reorders items of a class once there are more than
    16 rows; the unbalanced path taken for equal shots)."""
    x, y = clusters(3, 7, 5, seed=9)  # 21 support rows, 3 classes (decision_function gives all 3 logits)
    perm = np.random.default_rng(0).permutation(21)
    xs, ys = x[perm], y[perm]
    m = M.create(name, hidden=6, inner_steps=2) if name == "maml" else M.create(name, hidden=6, out_dim=3)
    q = x[::3]
    monkeypatch.setattr(m, "_score_unbalanced", lambda *a: pytest.fail("equal shots must take the batched path"))
    got = m.fit(xs, ys).decision_function(q)
    support = torch.stack([m.transform_features(xs[ys == c]) for c in (0, 1, 2)])  # class-major, given order
    want = m.episode_logits(support.unsqueeze(0), m.transform_features(q).unsqueeze(0))[0]
    assert torch.equal(torch.as_tensor(got), want)


def test_protonet_head_unbalanced_support_uses_the_class_means():
    """Unequal shots (3, 1, 2): prototypes are the per-class means of the embedded support, logits the
    negative squared distances (mutants of ProtoNetHead._score_unbalanced: * for /, clamp_min(2))."""
    x, y = clusters(3, 4, 5, seed=10)
    sx = torch.cat([x[0:3], x[4:5], x[8:10]])
    sy = np.array([0, 0, 0, 1, 2, 2])
    m = M.create("protonet-head", hidden=6, out_dim=3).fit(sx, sy)
    emb, q = m.model_, l2_normalize(x[[3, 5, 10, 11]])
    with torch.no_grad():
        z = emb(l2_normalize(sx))
        protos = torch.stack([z[0:3].mean(0), z[3], z[4:6].mean(0)])
        want = -((emb(q)[:, None, :] - protos[None]) ** 2).sum(-1)
    torch.testing.assert_close(torch.as_tensor(m.decision_function(x[[3, 5, 10, 11]])), want, rtol=1e-5, atol=1e-6)
