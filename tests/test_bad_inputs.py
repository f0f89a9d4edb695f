"""Bad input files (issue 12, items 9, 10, 11, 13, 14): each is built in a temp folder and must
give a clear message naming the file (and, in a manifest, its row) - never silence, a deep
traceback, or a gigabyte of memory."""

from __future__ import annotations

import resource
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import fewmm.data as D
from fewmm.data import io as fio
from fewmm.errors import DataError, DataWarning


def _tone(n=8000):
    return (0.5 * np.sin(np.arange(n) / 10.0)).astype(np.float32)


def _truncated_wav(path, declared=8000, held=1000):
    """A 16-bit PCM WAV whose header declares ``declared`` frames while the file holds ``held``."""
    sf.write(path, _tone(declared), 8000, subtype="PCM_16")
    raw = path.read_bytes()
    assert raw[36:40] == b"data" and struct.unpack("<I", raw[40:44])[0] == 2 * declared  # plain 44-byte header
    path.write_bytes(raw[: 44 + 2 * held])


# ---------------------------------------------------------------- 9: truncated WAV header


def test_truncated_wav_is_refused_naming_file_and_row(tmp_path):
    _truncated_wav(tmp_path / "cut.wav")
    # libsndfile itself reads it without complaint: the reason fewmm checks the header
    assert sf.info(str(tmp_path / "cut.wav")).frames == 1000
    with pytest.raises(DataError) as ei:
        D.read_audio(tmp_path / "cut.wav")
    msg = str(ei.value)
    assert str(tmp_path / "cut.wav") in msg
    assert "truncated WAV: its header declares 8000 frames (16000 bytes of data) but the file holds only 1000 frames (2000 bytes)" in msg

    sf.write(tmp_path / "ok.wav", _tone(400), 8000, subtype="PCM_16")
    (tmp_path / "m.csv").write_text("label,audio\na,ok.wav\nb,cut.wav\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        D.load_manifest(tmp_path / "m.csv")
    msg = str(ei.value)
    assert "1 problem in manifest" in msg
    assert "line 3 (data row 2), column 'audio': cut.wav: truncated WAV: its header declares 8000 frames" in msg


def test_header_only_wav_and_streamed_sizes():
    import io

    # a header that declares 100 frames and no data at all
    hdr = bytearray(b"RIFF" + struct.pack("<I", 36 + 200) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
                    + b"data" + struct.pack("<I", 200))
    assert fio.wav_truncation(io.BytesIO(bytes(hdr))) == (
        "truncated WAV: its header declares 100 frames (200 bytes of data) but the file holds only 0 frames (0 bytes); "
        "re-export or re-copy it")
    # 0 and 0xFFFFFFFF: streaming writers' "unknown size", not a truncation; non-RIFF: not checked here
    for unknown in (0, 0xFFFFFFFF):
        struct.pack_into("<I", hdr, 40, unknown)
        assert fio.wav_truncation(io.BytesIO(bytes(hdr) + b"\0" * 10)) is None
    assert fio.wav_truncation(io.BytesIO(b"fLaC" + b"\0" * 40)) is None


def test_intact_wav_with_extra_chunk_is_accepted(tmp_path):
    sf.write(tmp_path / "ok.wav", _tone(1000), 8000, subtype="PCM_16")
    raw = (tmp_path / "ok.wav").read_bytes()
    # insert a LIST chunk (odd size, padded) before the data chunk: the parser must walk chunks
    extra = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\0"
    body = raw[12:36] + extra + raw[36:]
    (tmp_path / "list.wav").write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    clip = D.read_audio(tmp_path / "list.wav")
    assert clip.waveform.shape == (1000,)
    assert fio.check_audio_file(tmp_path / "list.wav") is None


# ----------------------------------------------------------- 10: NaN samples, at load, with the row


def test_nan_wav_reported_at_load_with_its_row_beside_other_problems(tmp_path):
    x = _tone(800)
    x[123] = np.nan
    sf.write(tmp_path / "nan.wav", x, 8000, subtype="FLOAT")
    sf.write(tmp_path / "ok.wav", _tone(400), 8000, subtype="FLOAT")
    (tmp_path / "m.csv").write_text("label,audio\na,ok.wav\nb,missing.wav\nc,nan.wav\n,ok.wav\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        D.load_manifest(tmp_path / "m.csv")
    msg = str(ei.value)
    assert "3 problems in manifest" in msg
    assert "line 3 (data row 2), column 'audio': missing.wav: file not found" in msg
    assert ("line 4 (data row 3), column 'audio': nan.wav: audio file holds 1 NaN or inf samples (first at frame 123; "
            "a float WAV/FLAC?); expected finite samples in [-1, 1]") in msg
    assert "line 5 (data row 4), column 'label': empty label" in msg
    with pytest.raises(DataError, match=r"nan\.wav: audio file holds 1 NaN or inf samples"):
        D.read_audio(tmp_path / "nan.wav")


# ------------------------------------------------------ 11: absurd aspect ratio, no 1 GB resize


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def test_huge_aspect_ratio_png_is_refused_without_a_big_allocation(tmp_path):
    import fewmm.encoders as E

    Image.fromarray(np.full((1, 16000), 128, np.uint8)).save(tmp_path / "strip.png")
    with pytest.raises(DataError) as ei:
        D.read_image(tmp_path / "strip.png")
    msg = str(ei.value)
    assert str(tmp_path / "strip.png") in msg
    assert "image of 16000 x 1 pixels (width x height) has an aspect ratio of 16000:1, above the 100:1 fewmm accepts" in msg

    # through EfficientNet-Lite2, whose preprocessing resizes the shorter side to 128 px: refused
    # before any resize, so the peak memory of the process does not grow by the ~1 GB that the
    # 128 x 2,048,000 RGB intermediate would cost (measured before the fix: +1,070 MiB, and the strip was embedded); 200 MiB leaves
    # room for unrelated noise. The encoder is built and warmed up before measuring.
    enc = E.create("efficientnet-lite2")
    enc.embed([np.zeros((30, 40), np.uint8)])
    before = _peak_rss_mib()
    with pytest.raises(DataError, match="strip.png: image of 16000 x 1 pixels"):
        enc.embed([fio.FileRef(tmp_path / "strip.png")])
    assert _peak_rss_mib() - before < 200

    # a manifest reports it at load, with its row; arrays in memory are refused too
    Image.fromarray(np.full((20, 30), 9, np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "m.csv").write_text("label,image\na,ok.png\nb,strip.png\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 \(data row 2\), column 'image': strip\.png: image of 16000 x 1 pixels"):
        D.load_manifest(tmp_path / "m.csv")
    with pytest.raises(DataError, match="aspect ratio of 300:1"):
        D.read_image(np.zeros((2, 600), np.uint8))
    assert D.read_image(np.zeros((2, 200), np.uint8)).shape == (2, 200)  # 100:1 is still accepted


# ------------------------------------------------------------- 13: JSONL error line numbers


def test_jsonl_errors_do_not_mention_a_header(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"label": "a", "text": "x"}\n\n{"label": "", "text": "y"}\n', encoding="utf-8")
    with pytest.raises(DataError) as ei:
        D.load_manifest(tmp_path / "m.jsonl")
    msg = str(ei.value)
    assert "header" not in msg
    assert "line numbers are lines of the file, one JSON object per line, blank lines counted" in msg
    assert "line 3 (data row 2), column 'label': empty label" in msg
    (tmp_path / "m.csv").write_text("label,text\n,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="count the header as line 1"):
        D.load_manifest(tmp_path / "m.csv")


# ------------------------------------------------- 14: float WAV beyond [-1, 1]: warn once, naming it


def test_float_wav_beyond_unit_range_warns_once_naming_the_file(tmp_path):
    x = _tone(800) * 3.0  # peak 1.5
    sf.write(tmp_path / "loud.wav", x, 8000, subtype="FLOAT")
    (tmp_path / "m.csv").write_text("label,audio\na,loud.wav\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        table = D.load_manifest(tmp_path / "m.csv")         # warns at load ...
        clip = D.read_audio(table.modalities["audio"][0])   # ... and not again when read
        D.read_audio(tmp_path / "loud.wav")
    ours = [str(x.message) for x in w if issubclass(x.category, DataWarning)]
    assert len(ours) == 1, ours
    assert ours[0].startswith(f"{tmp_path / 'loud.wav'}: float samples reach 1.5, beyond [-1, 1]; fewmm clips them")
    assert clip.waveform.max() == 1.0 and clip.waveform.min() == -1.0
    # an in-range float file and an int16 file: no warning
    sf.write(tmp_path / "fine.wav", _tone(800), 8000, subtype="FLOAT")
    sf.write(tmp_path / "pcm.wav", _tone(800), 8000, subtype="PCM_16")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        D.read_audio(tmp_path / "fine.wav")
        D.read_audio(tmp_path / "pcm.wav")
    assert not [x for x in w if issubclass(x.category, DataWarning)]
