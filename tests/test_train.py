"""Episodic training of fusion heads: learning on synthetic data, base/novel separation, exact
resume, checkpoints and their mismatch errors, augmentation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fewmm.heads as H
from fewmm.episodes import sample_episodes
from fewmm.errors import EpisodeError, FeatureError
from fewmm.heads.synthetic import make_synthetic
from fewmm.multimodal import MMFeatures
from fewmm.engine.learner import augment_batch
from fewmm.train import CheckpointError, TrainConfig, load_head, save_head, train_head, training_episodes

BASE, VAL, NOVEL = range(0, 80), range(80, 90), range(90, 100)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def corrupt_data():
    """Image moderately informative, audio very informative when clean; half the items have
    pure-noise audio from a distinct distribution (offset + small noise)."""
    return make_synthetic(n_classes=100, per_class=20, noise=(2.0, 1.0), corrupt_noise=0.3, seed=0)


@pytest.fixture(scope="module")
def small():
    f, _ = make_synthetic(n_classes=100, per_class=12, missing_fraction=0.2, seed=1)
    return f


FAST = dict(n_shot=5, n_query=10, episodes_per_step=4, steps=300, eval_every=50, val_episodes=100, lr=3e-3, progress=False)


def _novel_eval(head, f, corrupted, n_shot=5):
    eps = sample_episodes(f.labels, 5, n_shot, 10, 300, seed=1, classes=NOVEL)
    acc, w = H.evaluate_head(head, f, eps, return_weights=True)
    qc = corrupted[eps.query.reshape(eps.n_episodes, -1)]
    return acc.mean(), w[..., 1][qc].mean(), w[..., 1][~qc].mean()


@pytest.mark.parametrize("name", ["gmu", "attention"])
def test_adaptive_heads_beat_avg_proto_and_distrust_corrupted_audio(name, corrupt_data):
    f, corrupted = corrupt_data
    base_acc, _, _ = _novel_eval(H.create("avg-proto", f), f, corrupted)
    torch.manual_seed(0)
    head = H.create(name, f)
    res = train_head(head, f, BASE, VAL, TrainConfig(**FAST))
    acc, w_cor, w_clean = _novel_eval(head, f, corrupted)
    # measured (CPU, torch 2.14): avg-proto 0.750, gmu 0.808, attention 0.805; audio weight
    # corrupted / clean items: gmu 0.19 / 0.48, attention 0.12 / 0.46
    assert acc > base_acc + 0.04, (acc, base_acc)
    assert w_cor < w_clean - 0.2, (w_cor, w_clean)
    assert res.best_val_acc > 0.75 and res.best_step > 0


def test_temperature_per_sample_learns(corrupt_data):
    f, corrupted = corrupt_data
    base_acc, _, _ = _novel_eval(H.create("avg-proto", f), f, corrupted)
    head = H.create("temperature", f, per_sample=True)
    train_head(head, f, BASE, VAL, TrainConfig(**{**FAST, "steps": 150}))
    acc, w_cor, w_clean = _novel_eval(head, f, corrupted)
    assert acc > base_acc + 0.04 and w_cor < w_clean - 0.2, (acc, base_acc, w_cor, w_clean)


def test_am3_class_text_helps_one_shot():
    f, corrupted = make_synthetic(n_classes=100, per_class=20, noise=(2.0, 1.0), corrupt_noise=0.3, text_dim=16, seed=0)
    base_acc, _, _ = _novel_eval(H.create("avg-proto", f), f, corrupted, n_shot=1)
    torch.manual_seed(0)
    head = H.create("am3", f)
    train_head(head, f, BASE, VAL, TrainConfig(**{**FAST, "n_shot": 1, "steps": 150}))
    acc, _, _ = _novel_eval(head, f, corrupted, n_shot=1)
    assert acc > base_acc + 0.04, (acc, base_acc)  # measured 0.71 vs 0.55


def test_corrupted_table_teaches_the_gate():
    """Train on clean features plus a second, corrupted table (audio = noise for every item);
    test on novel items of which half have corrupted audio."""
    clean, _ = make_synthetic(n_classes=100, per_class=20, noise=(2.0, 1.0), corrupt_modality=None, seed=0)
    noisy, _ = make_synthetic(n_classes=100, per_class=20, noise=(2.0, 1.0), corrupt_noise=0.3, corrupt_fraction=1.0, seed=0)
    test, corrupted = make_synthetic(n_classes=100, per_class=20, noise=(2.0, 1.0), corrupt_noise=0.3, seed=0)
    torch.testing.assert_close(clean.features["image"], noisy.features["image"])
    torch.manual_seed(0)
    head = H.create("gmu", clean, hidden=128)
    train_head(head, clean, BASE, VAL, TrainConfig(**{**FAST, "steps": 200, "corrupt_fraction": 0.5}), corrupted=noisy)
    acc, w_cor, w_clean = _novel_eval(head, test, corrupted)
    base_acc, _, _ = _novel_eval(H.create("avg-proto", test), test, corrupted)
    assert w_cor < w_clean - 0.2 and acc > base_acc + 0.03, (acc, base_acc, w_cor, w_clean)
    # without the corrupted table the gate never sees noise: it stays indifferent
    torch.manual_seed(0)
    naive = H.create("gmu", clean, hidden=128)
    train_head(naive, clean, BASE, VAL, TrainConfig(**{**FAST, "steps": 200}))
    _, n_cor, n_clean = _novel_eval(naive, test, corrupted)
    assert abs(n_cor - n_clean) < abs(w_cor - w_clean)


def test_training_never_touches_novel_items(small):
    cfg = TrainConfig(n_shot=(1, 3), n_query=4, episodes_per_step=3, steps=40, eval_every=20, val_episodes=20, progress=False)
    labels = small.labels
    for step in range(40):
        ep = training_episodes(labels, BASE, cfg, step)
        assert np.isin(labels[ep.support], BASE).all() and np.isin(labels[ep.query], BASE).all()
        assert np.isin(ep.classes, BASE).all()
    res = train_head(H.create("gmu", small, hidden=16), small, BASE, VAL, cfg)
    assert res.train_items.size > 100
    assert np.isin(labels[res.train_items], BASE).all()
    assert not np.isin(labels[res.train_items], NOVEL).any()
    assert np.isin(labels[res.val_items], VAL).all()
    assert res.steps == 40 and len(res.history) == 2


def test_same_seed_same_head_other_seed_differs(small):
    cfg = TrainConfig(n_query=4, episodes_per_step=2, steps=20, eval_every=10, val_episodes=10, progress=False,
                      modality_dropout=0.3)

    def run(seed):
        torch.manual_seed(0)
        h = H.create("attention", small, width=16, freeze_proj=False)
        return train_head(h, small, BASE, VAL, cfg, seed=seed).final_state

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def _resume_setup(small):
    noisy, _ = make_synthetic(n_classes=100, per_class=12, missing_fraction=0.2, corrupt_fraction=1.0, seed=1)
    cfg = TrainConfig(n_shot=(1, 2), n_query=4, episodes_per_step=2, steps=100, eval_every=25, val_episodes=20, progress=False,
                      modality_dropout=0.2, corrupt_fraction=0.3, patience=10)

    def head():
        torch.manual_seed(0)
        return H.create("gmu", small, hidden=16, freeze_proj=False, dropout=0.2)

    return noisy, cfg, head


def test_resume_is_bit_identical(small, tmp_path):
    noisy, cfg, head = _resume_setup(small)
    straight = train_head(head(), small, BASE, VAL, cfg, corrupted=noisy, checkpoint_dir=tmp_path / "a")
    first = train_head(head(), small, BASE, VAL, cfg, corrupted=noisy, checkpoint_dir=tmp_path / "b", steps=50)
    assert first.steps == 50
    saved = json.loads((tmp_path / "b" / "last.json").read_text())
    assert saved["step"] == 50 and saved["model"]["name"] == "gmu" and saved["model"]["dims"] == {"image": 32, "audio": 24}
    assert saved["model"]["encoders"]["audio"] == "synthetic:synthetic-1-audio"
    assert "torch" in saved["rng"] and saved["model"]["hparams"]["hidden"] == 16
    resumed = train_head(head(), small, BASE, VAL, cfg, corrupted=noisy, checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.steps == 100
    for k, v in straight.final_state.items():
        assert torch.equal(v, resumed.final_state[k]), k
    for k, v in straight.head.state_dict().items():  # the best heads
        assert torch.equal(v, resumed.head.state_dict()[k]), k
    assert straight.best_step == resumed.best_step and straight.best_val_acc == resumed.best_val_acc
    drop = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert drop(straight.history) == drop(resumed.history)
    # the saved optimizer state equals the straight run's too
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_config_or_head_fails(small, tmp_path):
    noisy, cfg, head = _resume_setup(small)
    train_head(head(), small, BASE, VAL, cfg, corrupted=noisy, checkpoint_dir=tmp_path, steps=25)
    with pytest.raises(CheckpointError, match="lr=0.001 \\(now 0.01\\)"):
        train_head(head(), small, BASE, VAL, cfg, corrupted=noisy, checkpoint_dir=tmp_path, resume=True, lr=1e-2)
    with pytest.raises(CheckpointError, match="holds head 'gmu', not 'attention'"):
        train_head(H.create("attention", small, width=16), small, BASE, VAL, cfg, corrupted=noisy, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="hyper-parameters"):
        train_head(H.create("gmu", small, hidden=8), small, BASE, VAL, cfg, corrupted=noisy, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="validation classes"):
        train_head(head(), small, BASE, range(85, 95), cfg, corrupted=noisy, checkpoint_dir=tmp_path, resume=True)


def test_best_checkpoint_roundtrip_and_mismatch_errors(small, tmp_path):
    cfg = TrainConfig(n_query=4, episodes_per_step=2, steps=30, eval_every=10, val_episodes=20, progress=False)
    torch.manual_seed(0)
    res = train_head(H.create("gmu", small, hidden=16), small, BASE, VAL, cfg, checkpoint_dir=tmp_path)
    loaded = load_head(tmp_path, features=small)
    eps = sample_episodes(small.labels, 5, 1, 3, 4, seed=0, classes=NOVEL)
    b = small.batch(eps)
    with torch.no_grad():
        for x, y in zip(res.head.eval()(b), loaded.eval()(b)):
            assert torch.equal(x, y)
    meta = json.loads((tmp_path / "best.json").read_text())
    assert meta["step"] == res.best_step and meta["val_acc"] == res.best_val_acc
    # another head
    with pytest.raises(CheckpointError, match="holds head 'gmu', not 'attention'"):
        load_head(tmp_path, head=H.create("attention", small, width=16))
    # other feature dims
    other, _ = make_synthetic(n_classes=10, per_class=4, dims=(("image", 32), ("audio", 20)), seed=1)
    with pytest.raises(CheckpointError, match="'audio' features of dim 24, these have dim 20"):
        load_head(tmp_path, features=other)
    with pytest.raises(CheckpointError, match="needs modality 'audio'"):
        load_head(tmp_path, features=small.select_modalities(("image",)))
    # other encoder weights
    moved = MMFeatures(small.features, small.mask, small.modalities, small.labels, small.class_names, None,
                       {"encoders": {"image": {"encoder": "synthetic", "weights_id": "synthetic-1-image"},
                                     "audio": {"encoder": "synthetic", "weights_id": "retrained"}}})
    with pytest.raises(CheckpointError, match="encoder weights 'synthetic:synthetic-1-audio'.*'synthetic:retrained'"):
        load_head(tmp_path, features=moved)
    with pytest.raises(FileNotFoundError):
        load_head(tmp_path / "nothing")


def test_save_head_fixed_and_load(small, tmp_path):
    h = H.create("single:audio", small, temperature=0.2)
    p = save_head(h, tmp_path / "s", small)
    again = load_head(p, features=small)
    assert again.config() == h.config()


def test_untrainable_head_is_only_validated(small, tmp_path):
    res = train_head(H.create("avg-proto", small), small, BASE, VAL, TrainConfig(val_episodes=20, n_query=4, progress=False),
                     checkpoint_dir=tmp_path)
    assert res.steps == 0 and 0.2 < res.best_val_acc <= 1.0
    assert (tmp_path / "best.json").exists()


def test_progress_bar_shows_loss_and_val_acc(small, capsys):
    cfg = TrainConfig(n_query=4, episodes_per_step=2, steps=10, eval_every=5, val_episodes=10, progress=True)
    train_head(H.create("temperature", small), small, BASE, VAL, cfg)
    err = capsys.readouterr().err
    assert "loss=" in err and "val_acc=" in err


def test_augmentation(small):
    cfg = TrainConfig(n_query=4, episodes_per_step=3, modality_dropout=1.0)
    ep = training_episodes(small.labels, BASE, cfg, 0)
    b = small.batch(ep)
    out = augment_batch(b, None, cfg.seed, 0, modality_dropout=cfg.modality_dropout)
    n_before, n_after = b.support_mask.sum(-1), out.support_mask.sum(-1)
    assert (n_after >= 1).all()
    assert torch.equal(n_after, torch.where(n_before >= 2, n_before - 1, n_before))
    assert (out.support["audio"][~out.support_mask[..., 1]] == 0).all()
    # corrupted table: with fraction 1 every present modality comes from it
    noisy = MMFeatures({m: v + 100.0 for m, v in small.features.items()}, small.mask, small.modalities, small.labels, small.class_names)
    cfg2 = TrainConfig(n_query=4, episodes_per_step=3, corrupt_fraction=1.0)
    out = augment_batch(b, noisy.batch(ep), cfg2.seed, 0, corrupt_fraction=cfg2.corrupt_fraction)
    for j, m in enumerate(small.modalities):
        present = b.support_mask[..., j]
        assert torch.equal(out.support[m][present], b.support[m][present] + 100.0)
        assert torch.equal(out.support[m][~present], b.support[m][~present])


def test_bad_training_input(small):
    cfg = TrainConfig(n_query=4, episodes_per_step=2, steps=2, eval_every=1, val_episodes=5, progress=False)
    head = H.create("gmu", small, hidden=16)
    with pytest.raises(EpisodeError, match=r"both base and validation classes"):
        train_head(head, small, range(0, 50), range(45, 60), cfg)
    holes = MMFeatures(small.features, small.mask.clone(), small.modalities, small.labels, small.class_names)
    holes.mask[7] = False
    with pytest.raises(FeatureError, match="item 7 has no modality"):
        train_head(head, holes, BASE, VAL, cfg)
    other, _ = make_synthetic(n_classes=100, per_class=12, dims=(("image", 32), ("audio", 20)), seed=1)
    with pytest.raises(FeatureError, match="modality 'audio' has dim 20"):
        train_head(head, other, BASE, VAL, cfg)
    short, _ = make_synthetic(n_classes=100, per_class=11, seed=1)
    with pytest.raises(FeatureError, match="same items"):
        train_head(head, small, BASE, VAL, cfg, corrupted=short, corrupt_fraction=0.5)
    with pytest.raises(ValueError, match="modality_dropout"):
        TrainConfig(modality_dropout=1.5)


def test_truncated_or_garbled_checkpoint_is_a_checkpoint_error(small, tmp_path):
    h = H.create("gmu", small, seed=0, hidden=8)
    p = save_head(h, tmp_path / "g", small)
    st = next(tmp_path.glob("g*.safetensors"))
    raw = st.read_bytes()
    st.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_head(p, features=small)
    js = next(tmp_path.glob("g*.json"))
    js.write_text('{"head": {"name": "gmu"')
    with pytest.raises(CheckpointError, match="not a readable head checkpoint"):
        load_head(p)


def test_mmfeatures_accepts_numpy_arrays():
    f = MMFeatures({"image": np.ones((3, 4), np.float64)}, np.ones((3, 1), bool), ("image",), np.zeros(3), ["a"])
    assert isinstance(f.features["image"], torch.Tensor) and f.features["image"].dtype == torch.float32
    with pytest.raises(FeatureError, match="NaN or inf"):
        MMFeatures({"image": np.full((3, 4), np.nan)}, np.ones((3, 1), bool), ("image",), np.zeros(3), ["a"])
