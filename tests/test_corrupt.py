"""Corruptions: white noise at an exact SNR, occlusion, pixel noise, corrupted tables."""

import math

import numpy as np
import pytest

from fewmm.corrupt import (
    Corruption,
    CorruptionError,
    add_white_noise,
    border_value,
    corrupt_table,
    item_rng,
    measured_snr_db,
    occlude,
    occlusion_box,
    parse_corruption,
    pixel_noise,
)
from fewmm.data import AudioClip, ItemTable, read_audio, read_image


@pytest.fixture(scope="module")
def fsdd(data_root):
    import fewmm.data as D

    return D.load("fsdd", root=data_root, download=False)


@pytest.fixture(scope="module")
def mnist(data_root):
    import fewmm.data as D

    return D.load("mnist", root=data_root, download=False)


# ----------------------------------------------------------------------------- audio


@pytest.mark.parametrize("snr", [-5.0, 0.0, 3.0, 10.0, 20.0, 40.0])
def test_white_noise_snr_on_real_fsdd_clip(fsdd, snr):
    clip = read_audio(fsdd.modalities["audio"][123])
    x = clip.waveform
    y = add_white_noise(x, snr, np.random.default_rng(0))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y).max() <= 1.0
    # undo the peak normalisation, if any: y = g * (x + n) with g = 1 / max|x + n| <= 1
    ps = np.mean(x.astype(np.float64) ** 2)
    raw = np.random.default_rng(0).standard_normal(x.shape)
    n = raw * math.sqrt(ps / 10 ** (snr / 10) / np.mean(raw ** 2))
    g = min(1.0, 1.0 / np.abs(x + n).max())
    assert abs(measured_snr_db(g * x.astype(np.float64), y) - snr) < 0.1
    if g == 1.0:  # no rescaling: the plain measurement against the clean clip, exact (not only on average)
        assert abs(measured_snr_db(x, y) - snr) < 1e-3


def test_white_noise_loud_clip_is_scaled_not_clipped():
    t = np.arange(8000) / 8000.0
    x = (0.99 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y = add_white_noise(x, 0.0, 7)
    assert np.isclose(np.abs(y).max(), 1.0, atol=1e-6)  # peak normalised to 1, nothing clipped
    raw = np.random.default_rng(7).standard_normal(x.shape)
    ps = np.mean(x.astype(np.float64) ** 2)
    n = raw * math.sqrt(ps / np.mean(raw ** 2))
    g = 1.0 / np.abs(x + n).max()
    assert g < 1.0
    assert abs(measured_snr_db(g * x.astype(np.float64), y) - 0.0) < 0.01
    np.testing.assert_allclose(y, g * (x + n), atol=1e-6)


def test_white_noise_seeded_and_silent_clip():
    x = np.random.default_rng(1).uniform(-0.3, 0.3, 4000).astype(np.float32)
    a = add_white_noise(x, 5.0, np.random.default_rng(3))
    b = add_white_noise(x, 5.0, np.random.default_rng(3))
    c = add_white_noise(x, 5.0, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    silent = np.zeros(1000, dtype=np.float32)
    np.testing.assert_array_equal(add_white_noise(silent, 0.0, 0), silent)  # documented: unchanged
    np.testing.assert_array_equal(add_white_noise(x, math.inf, 0), x)  # +inf dB: no noise
    with pytest.raises(CorruptionError):
        add_white_noise(x, float("nan"), 0)
    with pytest.raises(CorruptionError):
        add_white_noise(np.zeros(0), 10.0, 0)


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("frac", [0.0, 0.05, 0.1, 0.25, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("shape", [(28, 28), (105, 105), (20, 50), (64, 32)])
def test_occlusion_covers_requested_fraction(frac, shape):
    h, w = shape
    img = np.full((h, w), 200, dtype=np.uint8)
    for seed in range(3):
        out = occlude(img, frac, np.random.default_rng(seed), fill=0)
        covered = int((out == 0).sum())
        assert abs(covered - frac * h * w) <= max(h, w), (covered, frac * h * w)
        top, left, ph, pw = occlusion_box(h, w, frac, np.random.default_rng(seed))
        assert 0 <= top <= h - ph and 0 <= left <= w - pw
        assert covered == ph * pw
        assert (out[top : top + ph, left : left + pw] == 0).all()
    assert (img == 200).all()  # input untouched


def test_occlusion_rgb_and_background(mnist):
    im = read_image(mnist.modalities["image"][0])
    assert border_value(im) == 0  # MNIST background is black
    out = occlude(im, 0.3, 0)
    top, left, ph, pw = occlusion_box(28, 28, 0.3, 0)
    assert (out[top : top + ph, left : left + pw] == 0).all()
    outside = np.ones((28, 28), bool)
    outside[top : top + ph, left : left + pw] = False
    np.testing.assert_array_equal(out[outside], im[outside])
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[...] = (255, 255, 255)
    rgb[3:6, 3:6] = (10, 20, 30)
    assert (border_value(rgb) == 255).all()
    assert occlude(rgb, 0.5, 1, fill=7).shape == rgb.shape
    with pytest.raises(CorruptionError):
        occlude(im, 1.5, 0)
    with pytest.raises(CorruptionError):
        occlude(im.astype(np.float32), 0.5, 0)


def test_pixel_noise():
    img = np.full((64, 64), 128, dtype=np.uint8)
    out = pixel_noise(img, 20.0, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert abs(out.astype(float).std() - 20.0) < 1.0
    assert abs(out.astype(float).mean() - 128.0) < 1.0
    np.testing.assert_array_equal(pixel_noise(img, 0.0, 0), img)
    np.testing.assert_array_equal(pixel_noise(img, 20.0, 5), pixel_noise(img, 20.0, 5))
    sat = pixel_noise(np.full((8, 8), 250, np.uint8), 100.0, 0)
    assert sat.max() <= 255 and sat.min() >= 0
    with pytest.raises(CorruptionError):
        pixel_noise(img, -1.0, 0)


# ----------------------------------------------------------------------------- specs


def test_parse_corruption():
    assert parse_corruption(None) is None
    assert parse_corruption("noise:10") == Corruption("noise", 10.0, 0)
    assert parse_corruption("occlude:0.25:3") == Corruption("occlude", 0.25, 3)
    assert parse_corruption({"kind": "pixel_noise", "level": 50}) == Corruption("pixel_noise", 50.0, 0)
    assert parse_corruption("noise:-5").modality == "audio"
    assert parse_corruption("occlude:0.5").modality == "image"
    assert Corruption("noise", 10).tag() == "+noise(snr=10.0,seed=0)"
    for bad in ("noise", "blur:3", "occlude:2", "noise:x", {"kind": "noise"}, 3, "pixel_noise:-1"):
        with pytest.raises(CorruptionError):
            parse_corruption(bad)


# ----------------------------------------------------------------------------- tables


def test_corrupt_table_audio(fsdd):
    sub = fsdd.subset([0, 1, 2, 1500, 2999])
    bad = corrupt_table(sub, "audio", "noise", 5, seed=0)
    assert bad.name != sub.name and bad.name == f"{sub.name}+noise(snr=5.0,seed=0)"
    assert bad.ids == sub.ids and np.array_equal(bad.labels, sub.labels)
    assert corrupt_table(sub, "audio", "noise", 5, seed=1).name != bad.name
    assert corrupt_table(sub, "audio", "noise", 10, seed=0).name != bad.name
    for p_clean, p_bad in zip(sub.modalities["audio"], bad.modalities["audio"]):
        clean = read_audio(p_clean)
        assert isinstance(p_bad, AudioClip) and p_bad.sample_rate == clean.sample_rate == 8000
        assert not np.array_equal(p_bad.waveform, clean.waveform)
        assert abs(measured_snr_db(clean.waveform, p_bad.waveform) - 5.0) < 0.1
    assert bad.info["corruption"]["level"] == 5.0 and bad.info["corruption"]["unit"].startswith("dB")
    # an item's corruption depends on (seed, id) only, not on its position in the table
    again = corrupt_table(fsdd.subset([2999, 0]), "audio", "noise", 5, seed=0)
    np.testing.assert_array_equal(again.modalities["audio"][1].waveform, bad.modalities["audio"][0].waveform)
    np.testing.assert_array_equal(again.modalities["audio"][0].waveform, bad.modalities["audio"][4].waveform)
    with pytest.raises(CorruptionError):
        corrupt_table(sub, "image", "noise", 5, seed=0)  # noise is an audio corruption
    with pytest.raises(CorruptionError):
        corrupt_table(sub, "image", "occlude", 0.5, seed=0)  # no image in fsdd


@pytest.mark.parametrize("kind,level", [("occlude", 0.25), ("pixel_noise", 40.0)])
def test_corrupt_table_image(mnist, kind, level):
    sub = mnist.subset(range(10))
    bad = corrupt_table(sub, "image", kind, level, seed=2)
    assert bad.name == f"{sub.name}+{kind}({'area' if kind == 'occlude' else 'sigma'}={level!r},seed=2)"
    assert bad.name != sub.name
    n_diff = 0
    for a, b in zip(sub.modalities["image"], bad.modalities["image"]):
        assert b.dtype == np.uint8 and b.shape == (28, 28)
        n_diff += not np.array_equal(a, b)
    assert n_diff >= 8  # an occlusion may land on background only, rarely
    again = corrupt_table(sub, "image", kind, level, seed=2)
    for a, b in zip(again.modalities["image"], bad.modalities["image"]):
        np.testing.assert_array_equal(a, b)


def test_corrupt_table_keeps_missing_payloads():
    clips = [AudioClip(np.full(800, 0.1 * (i + 1), np.float32), 8000) for i in range(3)]
    t = ItemTable("toy", ["a", "b", "c"], np.array([0, 1, 0]), ["x", "y"],
                  {"audio": [clips[0], None, clips[2]], "text": ["p", "q", "r"]})
    bad = corrupt_table(t, "audio", "noise", 0, seed=0)
    assert bad.modalities["audio"][1] is None
    assert bad.modalities["text"] == ["p", "q", "r"]
    np.testing.assert_array_equal(item_rng(0, "a").random(3), item_rng(0, "a").random(3))
    assert not np.array_equal(item_rng(0, "a").random(3), item_rng(0, "b").random(3))
