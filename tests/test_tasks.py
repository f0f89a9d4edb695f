"""Multimodal tasks: pairing, splits, class text, missing / corrupted modalities.

Real-data tests use small fake encoders (no model weights) and a temporary feature cache."""

import numpy as np
import pytest
import torch

import fewmm.tasks as T
from fewmm.data import read_audio, read_image
from fewmm.encoders.base import Encoder
from fewmm.errors import UnknownNameError
from fewmm.multimodal import MMFeatures
from fewmm.tasks import digits_av, esc50_text

# ------------------------------------------------------------------ fake encoders


class FakeImage(Encoder):
    """(mean, std, ink fraction, mean of the top half) of the pixels."""

    name, modality, dim, weights_id, preprocess_id = "fake-image", "image", 4, "none", "stats-v1"

    def _prepare(self, payload):
        x = read_image(payload).astype(np.float32)
        return np.array([x.mean(), x.std(), (x > 0).mean(), x[: x.shape[0] // 2].mean()], np.float32)

    def _forward(self, batch):
        return torch.from_numpy(np.stack(batch))


class FakeAudio(Encoder):
    """(rms, duration s, peak, zero-crossing rate) of the waveform."""

    name, modality, dim, weights_id, preprocess_id = "fake-audio", "audio", 4, "none", "stats-v1"

    def _prepare(self, payload):
        c = read_audio(payload)
        w = c.waveform.astype(np.float64)
        return np.array([np.sqrt(np.mean(w * w)), len(w) / c.sample_rate, np.abs(w).max(),
                         np.mean(np.abs(np.diff(np.sign(w))) > 0)], np.float32)

    def _forward(self, batch):
        return torch.from_numpy(np.stack(batch))


class FakeText(Encoder):
    """Letter counts a..z."""

    name, modality, dim, weights_id, preprocess_id = "fake-text", "text", 26, "none", "letters-v1"

    def _prepare(self, payload):
        v = np.zeros(26, np.float32)
        for ch in payload.lower():
            if "a" <= ch <= "z":
                v[ord(ch) - 97] += 1
        return v

    def _forward(self, batch):
        return torch.from_numpy(np.stack(batch))


FAKES = dict(image_encoder=FakeImage(), audio_encoder=FakeAudio(), text_encoder=FakeText())


@pytest.fixture(scope="module")
def tables(data_root):
    import fewmm.data as D

    return D.load("mnist", root=data_root, download=False), D.load("fsdd", root=data_root, download=False)


@pytest.fixture(scope="module")
def small_av(data_root, feature_cache):
    """digits-av fold A with 12 pairs per digit and an occlusion corruption."""
    return T.build("digits-av", root=data_root, cache=feature_cache, fold="A", n_per_class=12,
                   corruption="occlude:0.5:0", **FAKES)


# ---------------------------------------------------------------------- registry


def test_registry_and_errors(data_root):
    assert T.list_tasks() == ["digits-av", "esc50-text", "manifest"]
    assert T.task_folds("digits-av") == ("A", "B")
    assert T.task_folds("esc50-text") == ("default",)
    with pytest.raises(UnknownNameError, match="digits-av"):
        T.build("digits-avv")
    with pytest.raises(T.TaskError, match="unknown option"):
        T.build("digits-av", root=data_root, foo=1)
    with pytest.raises(T.TaskError, match="unknown fold"):
        T.build("digits-av", root=data_root, fold="C")
    with pytest.raises(T.TaskError, match="audio only"):
        T.build("esc50-text", root=data_root, corruption="occlude:0.3", audio_encoder=FakeAudio())
    with pytest.raises(T.TaskError, match="embeds 'audio'"):
        T.build("digits-av", root=data_root, n_per_class=2, image_encoder=FakeAudio())


# ----------------------------------------------------------------------- pairing


def test_pairing_within_class_deterministic(tables):
    mnist, fsdd = tables
    img, aud, lab = digits_av.pair_within_class(mnist.labels, fsdd.labels, seed=0)
    assert img.shape == aud.shape == lab.shape == (3000,)
    assert np.bincount(lab).tolist() == [300] * 10  # min(MNIST count, FSDD 300) per digit
    np.testing.assert_array_equal(mnist.labels[img], lab)
    np.testing.assert_array_equal(fsdd.labels[aud], lab)
    assert np.unique(img).size == 3000 and np.unique(aud).size == 3000  # no row used twice
    img2, aud2, lab2 = digits_av.pair_within_class(mnist.labels, fsdd.labels, seed=0)
    np.testing.assert_array_equal(img, img2)
    np.testing.assert_array_equal(aud, aud2)
    img3, aud3, _ = digits_av.pair_within_class(mnist.labels, fsdd.labels, seed=1)
    assert not np.array_equal(img, img3) and not np.array_equal(aud, aud3)
    assert set(map(tuple, np.c_[img, aud])) != set(map(tuple, np.c_[img3, aud3]))
    # n_per_class keeps a prefix of the same shuffle
    img4, aud4, lab4 = digits_av.pair_within_class(mnist.labels, fsdd.labels, seed=0, n_per_class=5)
    np.testing.assert_array_equal(img4[:5], img[:5])
    np.testing.assert_array_equal(aud4[5:10], aud[300:305])
    with pytest.raises(T.TaskError):
        digits_av.pair_within_class(mnist.labels, fsdd.labels, seed=0, n_per_class=301)


def test_pairing_min_count_synthetic():
    il = np.array([0, 0, 0, 1, 1, 1, 1])
    al = np.array([1, 0, 1, 0, 0, 0, 0, 0])
    img, aud, lab = digits_av.pair_within_class(il, al, seed=3, n_classes=2)
    assert np.bincount(lab).tolist() == [3, 2]
    np.testing.assert_array_equal(il[img], lab)
    np.testing.assert_array_equal(al[aud], lab)
    with pytest.raises(T.TaskError, match="class 2"):
        digits_av.pair_within_class(il, al, seed=3, n_classes=3)


def test_digits_av_items_match_pairs(small_av, tables):
    mnist, fsdd = tables
    t = small_av
    f = t.features
    assert f.modalities == ("image", "audio") and len(f) == 120 and bool(f.mask.all())
    assert np.bincount(f.labels).tolist() == [12] * 10
    img_ids, aud_ids = t.item_ids["image"], t.item_ids["audio"]
    for i in (0, 37, 119):
        im = read_image(mnist.modalities["image"][mnist.ids.index(img_ids[i])])
        assert abs(float(f.features["image"][i, 0]) - im.mean()) < 1e-3
        assert mnist.labels[mnist.ids.index(img_ids[i])] == f.labels[i]
        assert aud_ids[i].split("/")[1].split("_")[0] == str(f.labels[i])  # FSDD file name starts with the digit
    np.testing.assert_array_equal(fsdd.labels[t.meta["fsdd_row"]], f.labels)
    assert f.class_text.shape == (10, 26)
    assert torch.allclose(f.class_text.norm(dim=1), torch.ones(10))
    assert not torch.allclose(f.class_text[7], f.class_text[8])
    assert "a spoken and handwritten digit: seven" in t.info["class_text"]["texts"]["7"]
    assert t.info["encoders"]["image"]["encoder"] == "fake-image"
    assert t.info["pair_seed"] == 0


def test_digits_av_folds(data_root, feature_cache, small_av):
    b = T.build("digits-av", root=data_root, cache=feature_cache, fold="B", n_per_class=12, **FAKES)
    for t in (small_av, b):
        assert np.intersect1d(t.base_classes, t.novel_classes).size == 0
        assert sorted(np.r_[t.base_classes, t.novel_classes].tolist()) == list(range(10))
        assert t.val_classes.size == 0
        # validation = a seeded 20 % of the base-class ITEMS, never novel-class items
        assert t.val_items.size == 5 * round(0.2 * 12)
        assert np.isin(t.features.labels[t.val_items], t.base_classes).all()
        assert np.intersect1d(t.split_items("base"), t.val_items).size == 0
        assert np.isin(t.features.labels[t.split_items("novel")], t.novel_classes).all()
        assert t.split_items("base").size + t.val_items.size + t.split_items("novel").size == len(t.features)
        rec = t.splits_record()
        assert rec["base_classes"] == t.base_classes.tolist() and "held-out items" in rec["validation"]
    assert small_av.base_classes.tolist() == [0, 1, 2, 3, 4] and b.base_classes.tolist() == [5, 6, 7, 8, 9]
    assert torch.equal(small_av.features.features["audio"], b.features.features["audio"])  # same items
    # validation items of a class do not depend on the fold: both folds agree with one draw over all classes
    every = digits_av.validation_items(b.features.labels, range(10), 0.2, 0)
    np.testing.assert_array_equal(np.sort(np.r_[small_av.val_items, b.val_items]), every)
    a2 = T.build("digits-av", root=data_root, cache=feature_cache, fold="A", n_per_class=12, val_seed=1, **FAKES)
    assert not np.array_equal(a2.val_items, small_av.val_items)
    eps = small_av.episodes("val", n_way=5, n_shot=1, n_query=1, n_episodes=4, seed=0)
    assert np.isin(eps.support, small_av.val_items).all() and np.isin(eps.query, small_av.val_items).all()
    eps = small_av.episodes("novel", n_way=5, n_shot=2, n_query=3, n_episodes=4, seed=0)
    assert np.isin(small_av.features.labels[eps.support], [5, 6, 7, 8, 9]).all()
    assert (small_av.features.labels[eps.support] == eps.classes[..., None]).all()


def test_digits_av_corrupted_features(small_av):
    t = small_av
    assert t.corrupted is not None and t.info["corruption"]["kind"] == "occlude"
    assert "+occlude(area=0.5,seed=0)" in t.info["corruption"]["table"]
    assert torch.equal(t.corrupted.features["audio"], t.features.features["audio"])
    changed = (t.corrupted.features["image"] != t.features.features["image"]).any(1)
    assert changed.float().mean() > 0.9  # half the area occluded: (almost) every image changes
    mixed, sel = T.apply_corruption(t.features, t.corrupted, "image", 0.25, seed=3)
    assert sel.sum() == 30
    assert torch.equal(mixed.features["image"][sel], t.corrupted.features["image"][sel])
    assert torch.equal(mixed.features["image"][~sel], t.features.features["image"][~sel])
    assert mixed.info["corruption_swaps"][0]["corruption"]["kind"] == "occlude"


# -------------------------------------------------------------------- esc50-text


def test_esc50_splits_fixed_and_documented():
    base, val, novel = map(np.asarray, (esc50_text.BASE_CLASSES, esc50_text.VAL_CLASSES, esc50_text.NOVEL_CLASSES))
    assert (base.size, val.size, novel.size) == (30, 10, 10)
    assert sorted(np.r_[base, val, novel].tolist()) == list(range(50))
    assert [sorted(x) for x in (base, val, novel)] == [list(x) for x in esc50_text.derive_splits()]
    for g in range(5):  # stratified over the five major categories
        assert [((s // 10) == g).sum() for s in (base, val, novel)] == [6, 2, 2]
    assert esc50_text.class_texts()[11] == ["the sound of sea waves"]


def test_esc50_task(data_root, feature_cache):
    t = T.build("esc50-text", root=data_root, cache=feature_cache, audio_encoder=FakeAudio(),
                text_encoder=FakeText())
    f = t.features
    assert f.modalities == ("audio",) and f.class_text.shape == (50, 26)
    assert len(f) == 414 and bool(f.mask.all())
    assert f.class_names == list(esc50_text.CATEGORIES)
    counts = np.bincount(f.labels, minlength=50)
    assert counts.min() >= 8
    for a, b in (("base", "val"), ("base", "novel"), ("val", "novel")):
        assert np.intersect1d(t.split_classes(a), t.split_classes(b)).size == 0
    assert t.val_items.size == 0 and t.split_items("val").size == counts[list(esc50_text.VAL_CLASSES)].sum()
    eps = t.episodes("novel", n_way=5, n_shot=1, n_query=5, n_episodes=3, seed=0)
    assert np.isin(eps.classes, esc50_text.NOVEL_CLASSES).all()
    assert t.splits_record()["novel_class_names"][0] == "rooster"


# ------------------------------------------------------------ robustness helpers


def _toy(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MMFeatures({"image": torch.randn(n, 3, generator=g) + 5, "audio": torch.randn(n, 2, generator=g) + 5},
                      torch.ones(n, 2, dtype=torch.bool), ("image", "audio"), np.arange(n) % 5,
                      [str(c) for c in range(5)])


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.33, 0.35, 0.47, 1.0])
def test_apply_missing_exact_and_seeded(fraction):
    f = _toy()
    out = T.apply_missing(f, "audio", fraction, seed=0)
    lost = ~out.mask[:, 1]
    assert int(lost.sum()) == round(fraction * 50)
    assert out.mask[:, 0].all()  # other modality untouched
    assert (out.features["audio"][lost] == 0).all() and (out.features["audio"][~lost] != 0).all()
    assert f.mask.all()  # input not modified
    again = T.apply_missing(f, "audio", fraction, seed=0)
    assert torch.equal(again.mask, out.mask)
    np.testing.assert_array_equal(np.flatnonzero(lost.numpy()), T.choose_items(50, fraction, 0))
    if 0 < fraction < 1:
        assert not torch.equal(T.apply_missing(f, "audio", fraction, seed=1).mask, out.mask)


def test_apply_missing_restricted_items():
    f = _toy()
    cand = np.arange(10, 30)
    out = T.apply_missing(f, "image", 0.25, seed=2, items=cand)
    lost = np.flatnonzero(~out.mask[:, 0].numpy())
    assert lost.size == 5 and np.isin(lost, cand).all()
    assert out.info["missing"][0]["n_masked"] == 5
    with pytest.raises(T.TaskError):
        T.apply_missing(f, "text", 0.5, 0)
    with pytest.raises(T.TaskError):
        T.apply_missing(f, "image", 1.5, 0)


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.23, 0.5, 1.0])
def test_apply_corruption_swaps_exactly(fraction):
    clean, bad = _toy(seed=0), _toy(seed=1)
    out, sel = T.apply_corruption(clean, bad, "audio", fraction, seed=4)
    assert sel.dtype == bool and sel.sum() == round(fraction * 50)
    np.testing.assert_array_equal(np.flatnonzero(sel), T.choose_items(50, fraction, 4))
    assert torch.equal(out.features["audio"][sel], bad.features["audio"][sel])
    assert torch.equal(out.features["audio"][~sel], clean.features["audio"][~sel])
    assert torch.equal(out.features["image"], clean.features["image"])
    out2, sel2 = T.apply_corruption(clean, bad, "audio", fraction, seed=4)
    np.testing.assert_array_equal(sel, sel2)
    # a masked item stays masked (zero row) even when chosen
    gone = T.apply_missing(clean, "audio", 1.0, seed=0)
    out3, _ = T.apply_corruption(gone, bad, "audio", fraction, seed=4)
    assert (out3.features["audio"] == 0).all() and not out3.mask[:, 1].any()
    with pytest.raises(T.TaskError):
        T.apply_corruption(clean, _toy(n=40), "audio", 0.5, 0)


def test_batch_helpers():
    from fewmm.episodes import sample_episodes

    clean, bad = _toy(seed=0), _toy(seed=1)
    eps = sample_episodes(clean.labels, n_way=3, n_shot=2, n_query=4, n_episodes=6, seed=0)
    cb, bb = clean.batch(eps), bad.batch(eps)
    m = T.apply_missing_batch(cb, "audio", 0.25, seed=0, part="query")
    assert ((~m.query_mask[..., 1]).sum(1) == 3).all()  # round(0.25 * 12) per episode
    assert m.support_mask.all() and m.query_mask[..., 0].all()
    assert (m.query["audio"][~m.query_mask[..., 1]] == 0).all()
    m = T.apply_missing_batch(cb, "image", 0.5, seed=0, part="both")
    assert ((~m.support_mask[..., 0]).flatten(1).sum(1) == 3).all()
    c, chosen = T.apply_corruption_batch(cb, bb, "audio", 0.5, seed=1, part="support")
    s = chosen["support"]
    assert (s.flatten(1).sum(1) == 3).all()
    assert torch.equal(c.support["audio"][s], bb.support["audio"][s])
    assert torch.equal(c.support["audio"][~s], cb.support["audio"][~s])
    assert torch.equal(c.query["audio"], cb.query["audio"])


def test_task_validation():
    f = _toy()
    with pytest.raises(T.TaskError, match="overlap"):
        T.Task("toy", f, [0, 1], [], [1, 2])
    with pytest.raises(T.TaskError, match="base classes"):
        T.Task("toy", f, [0, 1], [], [2, 3], val_items=[2])  # item 2 has class 2
    t = T.Task("toy", f, [0, 1, 2], [3], [4])
    assert t.split_items("val").tolist() == list(range(3, 50, 5))
    with pytest.raises(T.TaskError):
        t.split_items("test")


def test_digits_av_full_default_sizes(data_root, feature_cache, tables):
    """The default task: the FULL mnist/test and fsdd/all tables embedded (cache-shared), rows indexed."""
    mnist, fsdd = tables
    t = T.build("digits-av", root=data_root, cache=feature_cache, **FAKES)
    assert len(t.features) == 3000 and np.bincount(t.features.labels).tolist() == [300] * 10
    assert t.info["feature_cache"]["image"]["dataset"] == "mnist/test"
    assert t.info["feature_cache"]["audio"]["dataset"] == "fsdd/all"
    assert t.val_items.size == 300 and t.split_items("base").size == 1200 and t.split_items("novel").size == 1500
    i = 2345
    row = mnist.ids.index(t.item_ids["image"][i])
    assert abs(float(t.features.features["image"][i, 0]) - read_image(mnist.modalities["image"][row]).mean()) < 1e-3
    assert fsdd.ids[t.meta["fsdd_row"][i]] == t.item_ids["audio"][i]
    again = T.build("digits-av", root=data_root, cache=feature_cache, **FAKES)
    assert again.info["feature_cache"]["image"]["cache_hit"] and again.info["feature_cache"]["audio"]["cache_hit"]
    assert torch.equal(again.features.features["audio"], t.features.features["audio"])
