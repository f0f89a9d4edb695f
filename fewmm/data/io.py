"""Reading payloads: images -> uint8 arrays, audio -> float32 mono :class:`AudioClip`.

Encoders call :func:`read_image` / :func:`read_audio` on the payloads of an
:class:`~fewmm.data.table.ItemTable`; nothing is decoded before that. Zip members (Omniglot is
read straight from its official zips) are read through one open :class:`zipfile.ZipFile` per
archive and process, so a DataLoader worker or a forked process never shares a handle.

Audio is decoded with ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis, MP3) and resampled with
``scipy.signal.resample_poly``; images with Pillow.
"""

from __future__ import annotations

import io
import re
import os
import struct
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DataWarning
from .table import AudioClip, FileRef

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

_AUDIO_EXPECTED = "not a readable audio file (WAV/FLAC/OGG/MP3 expected)"
_IMAGE_EXPECTED = "not a readable image file (PNG/JPEG/BMP/GIF/WebP/TIFF expected)"

#: Images whose longer side is more than this many times their shorter side are refused: such a
#: file (e.g. 1 x 16000 pixels) is almost always a mistake, and resizing its shorter side to an
#: encoder's input size would build an enormous intermediate (1 x 16000 -> 128 x 2,048,000 RGB).
MAX_ASPECT_RATIO = 100

# (pid, archive path) -> open ZipFile. Keyed by pid so a forked worker opens its own handle.
_ZIP_HANDLES: dict[tuple[int, str], zipfile.ZipFile] = {}
_ZIP_LOCK = threading.Lock()


def zip_handle(path: Path) -> zipfile.ZipFile:
    """The open :class:`zipfile.ZipFile` of archive ``path`` for this process (opened once, kept;
    see :func:`close_zip_handles`). Raises :class:`~fewmm.errors.DataError` naming the archive
    when it is missing or not a zip file."""
    key = (os.getpid(), str(path))
    zf = _ZIP_HANDLES.get(key)
    if zf is None:
        with _ZIP_LOCK:
            zf = _ZIP_HANDLES.get(key)
            if zf is None:
                try:
                    zf = zipfile.ZipFile(path)
                except FileNotFoundError:
                    raise DataError(f"{path}: zip archive not found") from None
                except (zipfile.BadZipFile, OSError) as e:
                    raise DataError(f"{path}: not a readable zip archive: {e}") from None
                _ZIP_HANDLES[key] = zf
    return zf


def close_zip_handles() -> None:
    """Close the zip archives this process holds open (they reopen on the next read)."""
    with _ZIP_LOCK:
        for key in [k for k in _ZIP_HANDLES if k[0] == os.getpid()]:
            _ZIP_HANDLES.pop(key).close()


def read_bytes(ref: FileRef | str | os.PathLike) -> bytes:
    """The raw bytes of a file or zip member.

    Raises
    ------
    fewmm.errors.DataError
        The file, archive or member does not exist or cannot be read.
    """
    if not isinstance(ref, FileRef):
        ref = FileRef(Path(ref))
    if ref.member is None:
        try:
            return Path(ref.path).read_bytes()
        except FileNotFoundError:
            raise DataError(f"{ref}: file not found") from None
        except OSError as e:
            raise DataError(f"{ref}: cannot read file: {e}") from None
    zf = zip_handle(Path(ref.path))
    try:  # ZipFile serialises reads of its shared file handle itself
        return zf.read(ref.member)
    except KeyError:
        raise DataError(f"{ref}: no member {ref.member!r} in zip archive {ref.path}") from None
    except (zipfile.BadZipFile, OSError, RuntimeError) as e:
        raise DataError(f"{ref}: cannot read zip member: {e}") from None


# ---------------------------------------------------------------------------- images


def read_image(payload: Any) -> np.ndarray:
    """Decode an image payload to a uint8 pixel array.

    Parameters
    ----------
    payload : FileRef, str, os.PathLike, numpy.ndarray or PIL.Image.Image
        A file (or zip member) in any format Pillow reads, or pixels already in memory. Arrays of
        shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) are accepted: bool -> {0, 255}; float
        arrays whose maximum is <= 1 are taken as [0, 1] and scaled by 255, other floats and
        integers are rounded and clipped to [0, 255]; an alpha channel is dropped. A read-only
        array (e.g. an MNIST payload) is copied, so the result is always writable.

    Returns
    -------
    numpy.ndarray, uint8, of shape (H, W) for grayscale / 1-bit images or (H, W, 3) for colour
        Pixel values 0..255. 1-bit images (e.g. Omniglot) become 0 (black) / 255 (white);
        16-bit grayscale is scaled to 8 bits; palette images become RGB (or grayscale when the
        palette is gray).

    Raises
    ------
    fewmm.errors.DataError
        The file is missing or not a readable image, or the array has an unsupported shape.
    """
    from PIL import Image

    if isinstance(payload, np.ndarray):
        return _array_to_uint8_image(payload, "array")
    if isinstance(payload, Image.Image):
        if 0 in payload.size:
            raise DataError(f"PIL image of size {payload.size}: an image needs at least 1x1 pixels")
        _check_aspect(payload.size, "PIL image")
        return _pil_to_array(payload)
    if isinstance(payload, (FileRef, str, os.PathLike)):
        data = read_bytes(payload)
        try:
            with Image.open(io.BytesIO(data)) as im:
                _check_aspect(im.size, str(payload))  # before decoding: the header gives the size
                im.load()
                return _pil_to_array(im)
        except DataError:
            raise
        except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
            msg = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", " (the file's bytes)", str(e))
            raise DataError(f"{payload}: {_IMAGE_EXPECTED}: {msg}") from None
    raise DataError(
        f"cannot read an image from a {type(payload).__name__}; expected a FileRef, a path, "
        "a numpy array (H, W) / (H, W, 3) or a PIL image"
    )


def image_size_problem(size: tuple[int, int]) -> str | None:
    """Why an image of ``size`` = (width, height) pixels is refused, or ``None`` when it is fine.

    Refused: a side of 0 pixels, or an aspect ratio (longer side / shorter side) above
    :data:`MAX_ASPECT_RATIO`.
    """
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        return f"image of {w} x {h} pixels has no pixels"
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        return (f"image of {w} x {h} pixels (width x height) has an aspect ratio of {max(w, h) / min(w, h):.0f}:1, "
                f"above the {MAX_ASPECT_RATIO}:1 fewmm accepts; resizing its shorter side to an encoder's input "
                "size would need an enormous intermediate image. Crop or pad it to a sensible shape")
    return None


def _check_aspect(size, what: str) -> None:
    problem = image_size_problem(size)
    if problem is not None:
        raise DataError(f"{what}: {problem}")


def _pil_to_array(im) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.array(im.convert("L"), dtype=np.uint8)
    if mode == "L":
        return np.array(im, dtype=np.uint8)
    if mode in ("LA", "La"):
        return np.array(im.convert("L"), dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.array(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    if mode == "F":
        return _array_to_uint8_image(np.array(im), "image")
    if mode == "P":
        rgb = np.array(im.convert("RGB"), dtype=np.uint8)
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., 0])
        return rgb
    return np.array(im.convert("RGB"), dtype=np.uint8)


def _array_to_uint8_image(arr: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)) or a.size == 0:
        raise DataError(
            f"{what} of shape {tuple(np.shape(arr))} is not an image; expected (H, W), (H, W, 1), "
            "(H, W, 3) or (H, W, 4)"
        )
    _check_aspect((a.shape[1], a.shape[0]), what)
    if a.dtype == np.uint8:
        return a if a.flags.writeable else a.copy()
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise DataError(f"{what} holds NaN or inf pixel values")
        if a.max(initial=0.0) <= 1.0:
            a = a * 255.0
        return np.clip(np.round(a), 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    raise DataError(f"{what} has dtype {a.dtype}; expected uint8, bool, integer or float pixels")


# ----------------------------------------------------------------------------- audio


def read_audio(payload: Any) -> AudioClip:
    """Decode an audio payload to a float32 mono waveform.

    Parameters
    ----------
    payload : FileRef, str, os.PathLike, AudioClip or (array, sample_rate) tuple
        A WAV/FLAC/OGG/MP3 file (or zip member), decoded with ``soundfile``; or a waveform in
        memory. A 2-D array is taken as (n_samples, n_channels) as soundfile returns it, or as
        (n_channels, n_samples) when its first axis has at most 8 entries and its second more.
        Integer arrays are scaled by their type's full range (int16 / 32768).

    Returns
    -------
    AudioClip
        ``waveform``: numpy.ndarray of shape (n_samples,), float32, in [-1, 1] (channels
        averaged to mono, values outside [-1, 1] clipped; for a file, a
        :class:`~fewmm.errors.DataWarning` naming it says so, once per file and process);
        ``sample_rate``: int, Hz (the file's own rate: no resampling here, see :func:`resample`).

    Raises
    ------
    fewmm.errors.DataError
        The file is missing, not a readable audio file, a truncated WAV (header declaring more
        frames than the file holds), or holds NaN / inf samples; or the array/sample rate is
        malformed. The message names the file.
    """
    if isinstance(payload, AudioClip):
        return AudioClip(_to_mono_float32(payload.waveform, "AudioClip"), _check_sr(payload.sample_rate, "AudioClip"))
    if isinstance(payload, tuple) and len(payload) == 2 and not isinstance(payload[0], (str, os.PathLike)):
        arr, sr = payload
        return AudioClip(_to_mono_float32(arr, "(array, sr) tuple"), _check_sr(sr, "(array, sr) tuple"))
    if isinstance(payload, (FileRef, str, os.PathLike)):
        import soundfile as sf

        ref = payload if isinstance(payload, FileRef) else FileRef(Path(payload))
        try:
            if ref.member is None:
                if not Path(ref.path).is_file():
                    raise DataError(f"{ref}: file not found")
                with open(ref.path, "rb") as fh:
                    problem = wav_truncation(fh)
                if problem is None:
                    data, sr = sf.read(str(ref.path), dtype="float32", always_2d=True)
            else:
                raw = read_bytes(ref)
                problem = wav_truncation(io.BytesIO(raw))
                if problem is None:
                    data, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
        except DataError:
            raise
        except Exception as e:  # soundfile.LibsndfileError, RuntimeError, TypeError, ...
            raise DataError(f"{ref}: {_AUDIO_EXPECTED}: {e}") from None
        if problem is not None:
            raise DataError(f"{ref}: {problem}")
        problem = samples_problem(data)
        if problem is not None:
            raise DataError(f"{ref}: {problem}")
        warn_if_clipped(ref, data)
        wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        return AudioClip(np.ascontiguousarray(np.clip(wav, -1.0, 1.0), dtype=np.float32), int(sr))
    raise DataError(
        f"cannot read audio from a {type(payload).__name__}; expected a FileRef, a path, an "
        "AudioClip or an (array, sample_rate) tuple"
    )


def wav_truncation(fh) -> str | None:
    """Why a RIFF/WAVE file is truncated, or ``None`` (also for anything that is not RIFF/WAVE).

    Reads the chunk headers only: the ``data`` chunk's declared size is compared with the bytes
    the file holds after it. libsndfile reads a truncated WAV without complaint (as the frames
    present, or as silence), so fewmm refuses it instead. A declared size of 0 or 0xFFFFFFFF
    (written by streaming recorders that never went back to fill it in) is not a truncation.

    Parameters
    ----------
    fh : binary file object, seekable (an open file or ``io.BytesIO``)

    Returns
    -------
    str or None
        E.g. ``"truncated WAV: its header declares 16000 frames (32000 bytes of data) but the
        file holds only 1000 frames (2000 bytes)"``.
    """
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= size:
        fh.seek(pos)
        cid, csize = struct.unpack("<4sI", fh.read(8))
        if cid == b"fmt ":
            fmt = fh.read(min(csize, 16))
            if len(fmt) >= 14:
                block_align = struct.unpack("<H", fmt[12:14])[0]
        elif cid == b"data":
            held = size - (pos + 8)
            if csize in (0, 0xFFFFFFFF) or csize <= held:
                return None
            if block_align:
                return (f"truncated WAV: its header declares {csize // block_align} frames ({csize} bytes of data) "
                        f"but the file holds only {held // block_align} frames ({held} bytes); re-export or re-copy it")
            return (f"truncated WAV: its header declares {csize} bytes of data but the file holds only {held}; "
                    "re-export or re-copy it")
        pos += 8 + csize + (csize & 1)
    return None


def samples_problem(data: np.ndarray) -> str | None:
    """Why decoded samples (any shape) are unusable, or ``None``: no samples, or NaN / inf."""
    if data.size == 0:
        return "audio file holds no samples"
    finite = np.isfinite(data)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1) if data.ndim == 2 else ~finite)
        return (f"audio file holds {int((~finite).sum())} NaN or inf samples (first at frame {int(bad[0])}; a float "
                "WAV/FLAC?); expected finite samples in [-1, 1]")
    return None


_CLIP_WARNED: set[str] = set()
_CLIP_LOCK = threading.Lock()


def warn_if_clipped(ref: Any, data: np.ndarray) -> bool:
    """Warn (:class:`~fewmm.errors.DataWarning`, once per file and process) when decoded float
    samples reach beyond [-1, 1]: :func:`read_audio` clips them, which changes the waveform.

    Returns
    -------
    bool
        True when the samples go beyond [-1, 1] (whether or not a warning was shown now).
    """
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if not peak > 1.0:
        return False
    key = str(ref)
    with _CLIP_LOCK:
        first = key not in _CLIP_WARNED
        _CLIP_WARNED.add(key)
    if first:
        warnings.warn(f"{key}: float samples reach {peak:.4g}, beyond [-1, 1]; fewmm clips them to [-1, 1], "
                      "which distorts the sound. Rescale the file (e.g. divide by its peak) to keep it intact "
                      "(warned once per file)", DataWarning, stacklevel=3)
    return True


def check_audio_file(path: str | os.PathLike) -> str | None:
    """Check an audio file the way a manifest is checked at load: why it is unusable, or ``None``.

    Checks: libsndfile can open it and it holds samples; a WAV is not truncated
    (:func:`wav_truncation`); float-sample files (WAV/FLAC subtypes FLOAT / DOUBLE) are decoded and
    refused when they hold NaN or inf, and warned about (:func:`warn_if_clipped`) when their samples
    go beyond [-1, 1]. Integer PCM files cannot hold either, so they are not decoded (cheap).

    Returns
    -------
    str or None
        A phrase describing the problem (without the file name), e.g. ``"truncated WAV: ..."``.
    """
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile.LibsndfileError, RuntimeError
        return f"{_AUDIO_EXPECTED}: {type(e).__name__}: {e}"
    try:
        with open(path, "rb") as fh:
            problem = wav_truncation(fh)
    except OSError as e:
        return f"cannot read the file: {e}"
    if problem is not None:
        return problem
    if info.frames <= 0:
        return "audio file holds no samples"
    if str(info.subtype).upper() in ("FLOAT", "DOUBLE"):
        try:
            data, _ = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:
            return f"{_AUDIO_EXPECTED}: {type(e).__name__}: {e}"
        problem = samples_problem(data)
        if problem is not None:
            return problem
        warn_if_clipped(path, data)
    return None


#: Accepted sample rates (Hz): telephone 1 kHz .. studio 768 kHz; anything else is a mistake
#: (e.g. an (sample_rate, waveform) tuple the wrong way round) that would resample to nonsense.
SAMPLE_RATE_RANGE = (1000, 768000)


def _check_sr(sr: Any, what: str) -> int:
    if isinstance(sr, (bool, np.bool_)):
        raise DataError(f"{what}: sample rate {sr!r} is a bool, not a number of Hz")
    try:
        val = int(sr)
    except (TypeError, ValueError):
        raise DataError(f"{what}: sample rate {sr!r} is not an integer number of Hz") from None
    if val <= 0 or val != sr:
        raise DataError(f"{what}: sample rate {sr!r} must be a positive integer (Hz)")
    lo, hi = SAMPLE_RATE_RANGE
    if not lo <= val <= hi:
        raise DataError(f"{what}: sample rate {val} Hz is outside {lo}..{hi} Hz (a (waveform, sample_rate) tuple the wrong way round?)")
    return val


def _to_mono_float32(arr: Any, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 2:
        if a.shape[0] <= 8 < a.shape[1]:
            a = a.T  # (n_channels, n_samples) -> (n_samples, n_channels)
    elif a.ndim != 1:
        raise DataError(f"{what}: waveform of shape {a.shape}; expected (n_samples,) or (n_samples, n_channels)")
    if a.shape[0] == 0:
        raise DataError(f"{what}: waveform holds no samples")
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        if info.min < 0:
            a = a.astype(np.float64) / float(-info.min)
        else:  # unsigned PCM: midpoint is silence
            mid = (info.max + 1) / 2.0
            a = (a.astype(np.float64) - mid) / mid
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64, copy=False)
    else:
        raise DataError(f"{what}: waveform dtype {a.dtype}; expected float or integer samples")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{what}: waveform holds NaN or inf")
    if a.ndim == 2:
        a = a.mean(axis=1)
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0), dtype=np.float32)


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono waveform with a polyphase filter.

    Uses ``scipy.signal.resample_poly(waveform, up, down)`` with ``up / down = target_sr /
    orig_sr`` reduced by their greatest common divisor (e.g. 44100 -> 16000 Hz: up=160, down=441).

    Parameters
    ----------
    waveform : numpy.ndarray of shape (n_samples,)
    orig_sr, target_sr : int
        Sample rates in Hz.

    Returns
    -------
    numpy.ndarray of shape (ceil(n_samples * target_sr / orig_sr),), float32
        The input (as float32) when the rates are equal.

    Raises
    ------
    fewmm.errors.DataError
        A sample rate is not a positive integer or the waveform is not 1-D.
    """
    from math import gcd

    from scipy.signal import resample_poly

    orig = _check_sr(orig_sr, "resample orig_sr")
    target = _check_sr(target_sr, "resample target_sr")
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise DataError(f"resample: waveform of shape {x.shape}; expected a 1-D mono waveform (n_samples,)")
    if orig == target:
        return x
    g = gcd(orig, target)
    return resample_poly(x, target // g, orig // g).astype(np.float32, copy=False)


def audio_at(payload: Any, sample_rate: int) -> np.ndarray:
    """Audio payload -> mono float32 waveform (n_samples,) resampled to ``sample_rate`` Hz."""
    clip = read_audio(payload)
    return resample(clip.waveform, clip.sample_rate, sample_rate)


def read_text(payload: Any) -> str:
    """A text payload as ``str`` (a ``str`` is returned as is; a FileRef/Path is read as UTF-8).

    Raises
    ------
    fewmm.errors.DataError
        The file is missing or not valid UTF-8.
    """
    if isinstance(payload, str):
        return payload
    if isinstance(payload, (FileRef, os.PathLike)):
        data = read_bytes(payload)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{payload}: not a UTF-8 text file: {e}") from None
    raise DataError(f"cannot read text from a {type(payload).__name__}; expected str or a .txt file")


__all__ = [
    "read_image",
    "read_audio",
    "read_text",
    "read_bytes",
    "resample",
    "check_audio_file",
    "wav_truncation",
    "samples_problem",
    "warn_if_clipped",
    "image_size_problem",
    "MAX_ASPECT_RATIO",
    "close_zip_handles",
    "zip_handle",
    "audio_at",
    "IMAGE_EXTENSIONS",
    "AUDIO_EXTENSIONS",
]
