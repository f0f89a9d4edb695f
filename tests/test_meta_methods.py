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
