"""Tests of fewmm.data: the built-in loaders on the real shared data, payload reading, errors,
and the download path (exercised offline with file:// URLs)."""

from __future__ import annotations

import hashlib
import io as pyio
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fewmm.data as D
from fewmm.data import download as dl
from fewmm.data.io import read_bytes
from fewmm.errors import DataError, DataNotFoundError, UnknownNameError

from conftest import DATA  # noqa: E402  (absolute, see conftest)


def needs(folder: str):
    return pytest.mark.skipif(
        not (DATA / folder).is_dir(),
        reason=f"real data folder {DATA / folder} absent (set FEWMM_DATA to the shared data folder)",
    )


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # never touch (or find data in) the user's real ~/.cache/fewmm
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))


# ------------------------------------------------------------------ counts on real data

COUNTS = [
    ("omniglot", "evaluation", {}, 13180, 659, "omniglot"),
    ("omniglot", "background", {}, 19280, 964, "omniglot"),
    ("fsdd", None, {}, 3000, 10, "fsdd"),
    ("fsdd", "train", {}, 2700, 10, "fsdd"),
    ("fsdd", "test", {}, 300, 10, "fsdd"),
    ("fsdd", "all", {"label": "speaker"}, 3000, 6, "fsdd"),
    ("esc50", None, {}, 414, 50, "esc50"),
    ("esc50", "fold4", {}, 400, 50, "esc50"),
    ("mnist", None, {}, 10000, 10, "mnist_idx"),
    ("banking77", None, {}, 3080, 77, "banking77"),
    ("banking77", "train", {}, 10003, 77, "banking77"),
    ("digits", None, {}, 1797, 10, None),
]


@pytest.mark.parametrize("name,split,kw,n,n_classes,folder", COUNTS,
                         ids=[f"{c[0]}-{c[1]}-{'-'.join(c[2].values())}" for c in COUNTS])
def test_counts(name, split, kw, n, n_classes, folder):
    if folder is not None and not (DATA / folder).is_dir():
        pytest.skip(f"real data folder {DATA / folder} absent (set FEWMM_DATA)")
    t = D.load(name, split, root=DATA if folder else None, download=False, **kw)
    assert len(t) == n
    assert t.n_classes == n_classes
    assert len(set(t.ids)) == n
    # every table says where it came from and under which licence
    assert t.info["licence"] and t.info["source_url"].startswith("http")
    assert all(Path(p).is_file() for p in t.source_files[:5])
    if folder is not None:
        assert t.source_files


def test_list_datasets():
    assert D.list_datasets() == ["banking77", "digits", "esc50", "fsdd", "mnist", "omniglot"]


@needs("omniglot")
def test_omniglot_payload_and_meta():
    t = D.load("omniglot", "evaluation", root=DATA)
    assert t.name == "omniglot/evaluation"
    ref = t.modalities["image"][0]
    assert isinstance(ref, D.FileRef) and ref.member == t.ids[0]
    img = D.read_image(ref)
    assert img.shape == (105, 105) and img.dtype == np.uint8 and img.flags.writeable
    assert set(np.unique(img)) == {0, 255}
    # class "Alphabet/characterNN", 20 drawings each, alphabet meta consistent
    assert np.all(np.bincount(t.labels) == 20)
    name = t.class_names[t.labels[0]]
    assert name == "/".join(t.ids[0].split("/")[1:3])
    assert t.meta["alphabet"][0] == name.split("/")[0]
    assert len(set(t.meta["alphabet"])) == 20
    assert t.ids == sorted(t.ids)
    # background and evaluation share no item
    b = D.load("omniglot", "background", root=DATA)
    assert not set(b.ids) & set(t.ids)
    assert len(set(b.meta["alphabet"])) == 30
    # the zip is opened once per process
    assert read_bytes(ref) == zipfile.ZipFile(ref.path).read(ref.member)


@needs("fsdd")
def test_fsdd_splits_meta_and_audio():
    tr = D.load("fsdd", "train", root=DATA)
    te = D.load("fsdd", "test", root=DATA)
    assert set(tr.meta["take"]) == set(range(5, 50))
    assert set(te.meta["take"]) == set(range(0, 5))
    assert not set(tr.ids) & set(te.ids)
    assert np.all(np.bincount(te.labels) == 30)
    assert te.ids[0] == "recordings/0_george_0.wav"
    assert np.array_equal(te.labels, te.meta["digit"])
    clip = D.read_audio(te.modalities["audio"][0])
    assert clip.sample_rate == 8000
    assert clip.waveform.dtype == np.float32 and clip.waveform.ndim == 1
    assert 0.1 < clip.duration < 2.5
    assert np.abs(clip.waveform).max() <= 1.0
    sp = D.load("fsdd", label="speaker", root=DATA)
    assert sp.name == "fsdd-speaker/all"
    assert sp.class_names == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert np.all(np.bincount(sp.labels) == 500)
    i = sp.ids.index("recordings/3_nicolas_7.wav")
    assert sp.class_names[sp.labels[i]] == "nicolas"
    assert sp.meta["accent"][i] == "BEL/French" and sp.meta["gender"][i] == "male"
    with pytest.raises(DataError, match="label"):
        D.load("fsdd", label="gender", root=DATA)


@needs("esc50")
def test_esc50_classes_folds_audio():
    t = D.load("esc50", root=DATA)
    assert t.info["n_present"] == 414 and t.info["n_official"] == 2000
    assert t.class_names[0] == "dog" and t.class_names[49] == "hand_saw"
    # labels are the official targets (file names end in -<target>.wav)
    assert all(int(i[:-4].split("-")[-1]) == lab for i, lab in zip(t.ids, t.labels))
    assert np.bincount(t.meta["fold"], minlength=6)[4] == 400
    assert t.meta["esc10"].dtype == bool and 0 < t.meta["esc10"].sum() < len(t)
    clip = D.read_audio(t.modalities["audio"][0])
    assert clip.sample_rate == 16000 and clip.waveform.shape == (80000,)
    with pytest.raises(DataError, match=r"fold1.*414 of 2000"):
        D.load("esc50", "fold1", root=DATA)


@needs("mnist_idx")
def test_mnist():
    t = D.load("mnist", root=DATA)
    img = D.read_image(t.modalities["image"][0])
    assert img.shape == (28, 28) and img.dtype == np.uint8 and img.flags.writeable
    assert not t.modalities["image"][0].flags.writeable  # the table's payloads are protected
    assert t.labels[0] == 7  # the first MNIST test digit is a 7
    assert np.bincount(t.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    with pytest.raises(DataError, match="train"):
        D.load("mnist", "train", root=DATA)


@needs("banking77")
def test_banking77():
    t = D.load("banking77", root=DATA)
    assert t.name == "banking77/test"
    assert np.all(np.bincount(t.labels, minlength=77) == 40)
    assert t.modalities["text"][0] == "How do I locate my card?"
    assert t.class_names[t.labels[0]] == "card_arrival"


def test_digits():
    t = D.load("digits")
    img = D.read_image(t.modalities["image"][0])
    assert img.shape == (8, 8) and img.dtype == np.uint8
    assert img[0, 2] == 80  # sklearn's count 5 of 16 -> round(5 * 255 / 16)
    assert max(int(a.max()) for a in t.modalities["image"]) == 255
    assert t.labels[:3].tolist() == [0, 1, 2]


@needs("omniglot")
def test_loading_is_deterministic():
    a = D.load("omniglot", root=DATA)
    b = D.load("omniglot", root=DATA)
    assert a.ids == b.ids and np.array_equal(a.labels, b.labels) and a.class_names == b.class_names


# ------------------------------------------------------------------------ errors


def test_unknown_dataset_name():
    with pytest.raises(UnknownNameError) as ei:
        D.load("omniglott")
    msg = str(ei.value)
    assert "omniglott" in msg and "Did you mean 'omniglot'" in msg
    for n in D.list_datasets():
        assert n in msg


def test_unknown_option():
    with pytest.raises(DataError, match=r"fsdd: unknown option\(s\) lable; its options: label"):
        D.load("fsdd", lable="speaker")


def test_unknown_split():
    with pytest.raises(DataError, match=r"unknown split 'valid'.*'background', 'evaluation'"):
        D.load("omniglot", "valid")


def test_missing_folder_message(tmp_path):
    with pytest.raises(DataNotFoundError) as ei:
        D.load("omniglot", root=tmp_path, download=False)
    msg = str(ei.value)
    assert "'omniglot'" in msg
    assert str(tmp_path / "omniglot") in msg
    assert "root argument" in msg
    assert "download=False" in msg
    assert "--data-root DIR" in msg and "FEWMM_DATA=DIR" in msg
    assert "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_evaluation.zip" in msg
    assert isinstance(ei.value, FileNotFoundError)


def test_missing_folder_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWMM_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"(?s)banking77.*from \$FEWMM_DATA"):
        D.load("banking77", download=False)


# ------------------------------------------------------------- download (offline)


def _omniglot_zip(path: Path) -> bytes:
    from PIL import Image

    buf = pyio.BytesIO()
    with zipfile.ZipFile(path, "w") as zf:
        for ch in (1, 2):
            for drawer in (1, 2, 3):
                buf.seek(0), buf.truncate()
                Image.fromarray(np.full((105, 105), 255, np.uint8)).convert("1").save(buf, "PNG")
                zf.writestr(f"images_evaluation/Fake_Script/character{ch:02d}/09{ch:02d}_{drawer:02d}.png",
                            buf.getvalue())
    return path.read_bytes()


def _patch_omniglot_source(monkeypatch, url: str, sha: str | None):
    src = dl.Source("omniglot", "omniglot", "https://example.invalid",
                    (dl.RemoteFile("images_evaluation.zip", (url,), sha),))
    monkeypatch.setitem(dl.SOURCES, "omniglot", src)


def test_download_into_user_cache_with_sha256(tmp_path, monkeypatch):
    remote = tmp_path / "remote" / "images_evaluation.zip"
    remote.parent.mkdir()
    sha = hashlib.sha256(_omniglot_zip(remote)).hexdigest()
    _patch_omniglot_source(monkeypatch, remote.as_uri(), sha)
    t = D.load("omniglot", root=tmp_path / "empty")
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "fewmm" / "data" / "omniglot" / "images_evaluation.zip"
    assert cache.is_file()
    assert len(t) == 6 and t.class_names == ["Fake_Script/character01", "Fake_Script/character02"]
    assert t.source_files == [cache.resolve()]
    assert D.read_image(t.modalities["image"][0]).shape == (105, 105)


def test_download_sha_mismatch_is_reported(tmp_path, monkeypatch):
    remote = tmp_path / "images_evaluation.zip"
    _omniglot_zip(remote)
    _patch_omniglot_source(monkeypatch, remote.as_uri(), "0" * 64)
    with pytest.raises(DataNotFoundError) as ei:
        D.load("omniglot", root=tmp_path / "empty")
    msg = str(ei.value)
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "fewmm" / "data" / "omniglot"
    assert "sha256 mismatch" in msg and f"Download from the official source into {cache} failed" in msg
    assert not cache.exists()  # nothing half-written left behind


def test_download_unreachable_fails_fast(tmp_path, monkeypatch):
    import time

    _patch_omniglot_source(monkeypatch, (tmp_path / "nope.zip").as_uri(), None)
    t0 = time.monotonic()
    with pytest.raises(DataNotFoundError, match="nope.zip"):
        D.load("omniglot", root=tmp_path)
    assert time.monotonic() - t0 < 5


def test_archive_download_extracts_members(tmp_path, monkeypatch):
    import soundfile as sf

    arch = tmp_path / "fsdd.zip"
    with zipfile.ZipFile(arch, "w") as zf:
        for name in ("0_alice_0.wav", "1_alice_7.wav", "1_bob_3.wav"):
            buf = pyio.BytesIO()
            sf.write(buf, np.zeros(800, np.int16), 8000, format="WAV", subtype="PCM_16")
            zf.writestr(f"free-spoken-digit-dataset-1.0.10/recordings/{name}", buf.getvalue())
        zf.writestr("free-spoken-digit-dataset-1.0.10/README.md", "x")
    spec = dl.RemoteArchive((arch.as_uri(),), None, (("recordings/", "recordings/"),), (("recordings", 3),))
    monkeypatch.setitem(dl.SOURCES, "fsdd", dl.Source("fsdd", "fsdd", "https://example.invalid", (spec,)))
    t = D.load("fsdd", "test", root=tmp_path / "empty")
    assert t.ids == ["recordings/0_alice_0.wav", "recordings/1_bob_3.wav"]
    assert list(t.meta["gender"]) == ["unknown", "unknown"]  # no speakers.csv in the archive
    assert D.read_audio(t.modalities["audio"][1]).sample_rate == 8000
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "fewmm" / "data" / "fsdd"
    assert not (cache / "README.md").exists() and not (cache / ".archive.zip").exists()


def test_sources_pin_shared_checksums():
    """The pinned sha256 values are the shared copies' (which are the official files)."""
    manifest = DATA / "MANIFEST.sha256"
    if not manifest.is_file():
        pytest.skip(f"{manifest} absent")
    shared = {}
    for line in manifest.read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        shared[rel.lstrip("./")] = digest
    n = 0
    for src in dl.SOURCES.values():
        for f in src.files:
            if isinstance(f, dl.RemoteFile) and f.sha256 is not None:
                assert shared[f"{src.folder}/{f.dest}"] == f.sha256
                n += 1
    assert n == 7  # 3 Omniglot zips (incl. all_runs.zip), 2 MNIST, 2 BANKING77


# --------------------------------------------------------------------------- io


def test_corrupt_wav_names_file(tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(DataError) as ei:
        D.read_audio(bad)
    assert str(bad) in str(ei.value)
    assert "not a readable audio file (WAV/FLAC/OGG/MP3 expected)" in str(ei.value)
    with pytest.raises(DataError, match="file not found"):
        D.read_audio(tmp_path / "missing.wav")


def test_corrupt_png_names_file(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError) as ei:
        D.read_image(D.FileRef(bad))
    assert str(bad) in str(ei.value) and "not a readable image" in str(ei.value)


def test_read_audio_formats(tmp_path):
    import soundfile as sf

    stereo = np.stack([np.full(1000, 0.5), np.full(1000, -0.25)], axis=1)
    p = tmp_path / "s.flac"
    sf.write(p, stereo, 22050, subtype="PCM_16")
    clip = D.read_audio(str(p))
    assert clip.sample_rate == 22050 and clip.waveform.shape == (1000,)
    assert clip.waveform.dtype == np.float32
    assert np.allclose(clip.waveform, 0.125, atol=1e-3)
    # int16 (n_channels, n_samples) tuple: scaled by 32768, averaged
    c2 = D.read_audio((np.array([[16384] * 20, [0] * 20], np.int16), 8000))
    assert np.allclose(c2.waveform, 0.25) and c2.sample_rate == 8000
    c3 = D.read_audio(D.AudioClip(np.array([2.0, -0.5]), 16000))
    assert c3.waveform.tolist() == [1.0, -0.5] and c3.waveform.dtype == np.float32
    with pytest.raises(DataError, match="sample rate"):
        D.read_audio((np.zeros(10), 0))


def test_read_image_formats(tmp_path):
    from PIL import Image

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200
    p = tmp_path / "c.png"
    Image.fromarray(rgba, "RGBA").save(p)
    img = D.read_image(p)
    assert img.shape == (4, 6, 3) and img[0, 0].tolist() == [200, 0, 0]
    assert D.read_image(Image.fromarray(rgba[..., :3])).shape == (4, 6, 3)
    assert D.read_image(np.full((3, 3), 0.5)).tolist() == [[128] * 3] * 3
    assert D.read_image(np.ones((2, 2), bool)).max() == 255
    with pytest.raises(DataError, match="not an image"):
        D.read_image(np.zeros((2, 2, 2)))


def test_resample():
    sr_in, sr_out = 44100, 16000
    t = np.arange(sr_in) / sr_in
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = D.resample(x, sr_in, sr_out)
    assert y.shape == (16000,) and y.dtype == np.float32
    # still a 440 Hz tone
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * sr_out / len(y) - 440) < 2
    assert D.resample(x, 8000, 8000) is x


def test_float_wav_with_nan_samples_is_rejected_naming_the_file(tmp_path):
    import numpy as np
    import soundfile as sf

    from fewmm.data import read_audio
    from fewmm.errors import DataError

    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1], dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"nan\.wav: audio file holds 1 NaN or inf samples \(first at frame 1;"):
        read_audio(str(path))
