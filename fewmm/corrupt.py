"""Corrupted copies of items: white noise on audio, occlusion and pixel noise on images.

Used by the robustness settings of :mod:`fewmm.tasks`: a task built with ``corruption=`` embeds a
corrupted copy of every item (features recomputed from the corrupted payloads), and an
experiment swaps a seeded fraction of items to those features (:func:`fewmm.tasks.apply_corruption`).

Corruptions (``kind``, the modality it applies to, and the unit of ``level``):

=============  ========  ================================================================
kind           modality  level
=============  ========  ================================================================
``noise``      audio     signal-to-noise ratio in dB (white Gaussian noise, :func:`add_white_noise`)
``occlude``    image     fraction of the image area covered by one random square patch set to
                         the background value (:func:`occlude`), in [0, 1]
``pixel_noise`` image    standard deviation of Gaussian noise in pixel intensity units (0-255
                         scale, :func:`pixel_noise`)
=============  ========  ================================================================

Every corruption is seeded: item ``i`` of a table is corrupted with the generator
``numpy.random.default_rng(SeedSequence([seed, h(id_i)]))`` (``h`` = the first 8 bytes of the
sha256 of the item id), so an item's corruption depends on ``(seed, item id)`` only, not on its
position in the table or on the other items: a corrupted subset equals the subset of a corrupted
table.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data.io import read_audio, read_image
from .data.table import AudioClip, ItemTable
from .errors import FewmmError

#: kind -> (modality, name of the level in table names, unit of the level)
KINDS: dict[str, tuple[str, str, str]] = {
    "noise": ("audio", "snr", "dB (signal-to-noise ratio of added white Gaussian noise)"),
    "occlude": ("image", "area", "fraction of the image area (one square patch set to the background)"),
    "pixel_noise": ("image", "sigma", "pixel intensity, 0-255 scale (std of added Gaussian noise)"),
}


class CorruptionError(FewmmError, ValueError):
    """A corruption was asked for with a bad kind, level, modality or input array."""


# ----------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Corruption:
    """What to corrupt, how much, and with which seed.

    Parameters
    ----------
    kind : {"noise", "occlude", "pixel_noise"}
        See the module docstring; the kind fixes the modality (``noise`` -> audio, the others
        -> image).
    level : float
        SNR in dB for ``noise``; fraction of the image area in [0, 1] for ``occlude``; standard
        deviation in pixel intensity units (0-255) for ``pixel_noise``.
    seed : int, default 0

    Raises
    ------
    CorruptionError
        Unknown kind, or a level outside its range (see :func:`check_level`).
    """

    kind: str
    level: float
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", check_level(self.kind, self.level))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def modality(self) -> str:
        """The modality this corruption applies to (``"audio"`` or ``"image"``)."""
        return KINDS[self.kind][0]

    @property
    def unit(self) -> str:
        return KINDS[self.kind][2]

    def tag(self) -> str:
        """The suffix :func:`corrupt_table` appends to a table name, e.g. ``"+noise(snr=10.0,seed=0)"``."""
        return f"+{self.kind}({KINDS[self.kind][1]}={self.level!r},seed={self.seed})"

    def as_dict(self) -> dict:
        """JSON-able description (kind, modality, level, unit, seed)."""
        return {"kind": self.kind, "modality": self.modality, "level": self.level, "unit": self.unit,
                "seed": self.seed}


def parse_corruption(spec: Any) -> Corruption | None:
    """A :class:`Corruption` from any of its spellings.

    Parameters
    ----------
    spec : None, Corruption, dict or str
        ``None`` -> ``None``. A dict with keys ``kind``, ``level`` and optionally ``seed``. A
        string ``"kind:level"`` or ``"kind:level:seed"``, e.g. ``"noise:0"`` (white noise at 0 dB
        SNR), ``"occlude:0.25:1"`` (a quarter of the image area, seed 1), ``"pixel_noise:50"``.

    Returns
    -------
    Corruption or None

    Raises
    ------
    CorruptionError
        Malformed spec, unknown kind or bad level.
    """
    if spec is None or isinstance(spec, Corruption):
        return spec
    if isinstance(spec, dict):
        unknown = set(spec) - {"kind", "level", "seed"}
        if unknown or not {"kind", "level"} <= set(spec):
            raise CorruptionError(f"corruption dict needs keys 'kind', 'level' (and optionally 'seed'), got {sorted(spec)}")
        return Corruption(str(spec["kind"]), spec["level"], int(spec.get("seed", 0)))
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise CorruptionError(f"corruption {spec!r}: expected 'kind:level' or 'kind:level:seed', e.g. 'noise:10'")
        try:
            level = float(parts[1])
            seed = int(parts[2]) if len(parts) == 3 else 0
        except ValueError:
            raise CorruptionError(f"corruption {spec!r}: level must be a number and seed an integer") from None
        return Corruption(parts[0], level, seed)
    raise CorruptionError(f"cannot read a corruption from a {type(spec).__name__}; expected None, Corruption, dict or str")


def check_level(kind: str, level: Any) -> float:
    """``level`` as float, checked for ``kind``.

    Raises
    ------
    CorruptionError
        Unknown ``kind``; ``noise`` level NaN or -inf (+inf = no noise is allowed); ``occlude``
        level outside [0, 1]; ``pixel_noise`` level negative or not finite.
    """
    if kind not in KINDS:
        raise CorruptionError(f"unknown corruption kind {kind!r}; expected one of {', '.join(KINDS)}")
    try:
        lv = float(level)
    except (TypeError, ValueError):
        raise CorruptionError(f"{kind}: level {level!r} is not a number") from None
    if kind == "noise" and (math.isnan(lv) or lv == -math.inf):
        raise CorruptionError(f"noise: SNR must be a number of dB (or +inf for no noise), got {level!r}")
    if kind == "occlude" and not 0.0 <= lv <= 1.0:
        raise CorruptionError(f"occlude: area fraction must lie in [0, 1], got {level!r}")
    if kind == "pixel_noise" and not (math.isfinite(lv) and lv >= 0.0):
        raise CorruptionError(f"pixel_noise: sigma must be a finite number >= 0 (pixel intensity, 0-255), got {level!r}")
    return lv


def _rng(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ----------------------------------------------------------------------------- audio


def add_white_noise(waveform: np.ndarray, snr_db: float, rng: np.random.Generator | int | None) -> np.ndarray:
    """Add white Gaussian noise at an exact signal-to-noise ratio.

    The signal power is measured on the clip, ``P_s = mean(waveform**2)``; noise is drawn from
    N(0, 1), then scaled so that its power on this clip is exactly ``P_n = P_s / 10**(snr_db / 10)``
    (so ``10 * log10(P_s / mean(noise**2)) == snr_db`` up to float32 rounding, not only in
    expectation).

    Range: if the noisy clip's peak ``max|waveform + noise|`` exceeds 1, the whole clip (signal
    and noise together) is scaled down so its peak is 1. This keeps the samples in [-1, 1]
    without clipping and keeps the SNR exact (both powers scale by the same factor); the loudness
    then drops, which matters only at very low SNR or for very loud clips.

    Silent clip: when ``P_s == 0`` the formula gives noise power 0, and the clip is returned
    unchanged (as a float32 copy); so is any clip when ``snr_db == +inf``.

    Parameters
    ----------
    waveform : numpy.ndarray of shape (n_samples,) (any shape is accepted), float, in [-1, 1]
    snr_db : float
        Signal-to-noise ratio in dB; may be negative (more noise than signal); ``+inf`` = no noise.
    rng : numpy.random.Generator, int or None
        Noise source (an int or None seeds ``numpy.random.default_rng``).

    Returns
    -------
    numpy.ndarray, float32, the shape of ``waveform``

    Raises
    ------
    CorruptionError
        ``snr_db`` is NaN or -inf; the waveform is empty or holds NaN/inf.
    """
    snr = check_level("noise", snr_db)
    x = np.asarray(waveform, dtype=np.float64)
    if x.size == 0:
        raise CorruptionError("add_white_noise: empty waveform")
    if not np.all(np.isfinite(x)):
        raise CorruptionError("add_white_noise: waveform holds NaN or inf")
    p_signal = float(np.mean(x * x))
    if p_signal == 0.0 or snr == math.inf:
        return x.astype(np.float32)
    noise = _rng(rng).standard_normal(x.shape)
    p_drawn = float(np.mean(noise * noise))
    if p_drawn == 0.0:  # a single sample that drew exactly 0: practically impossible
        return x.astype(np.float32)
    noise *= math.sqrt(p_signal / 10.0 ** (snr / 10.0) / p_drawn)
    y = x + noise
    peak = float(np.max(np.abs(y)))
    if peak > 1.0:
        y /= peak
    return y.astype(np.float32)


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """``10 * log10(mean(clean**2) / mean((noisy - clean)**2))`` in dB (float64 arithmetic).

    ``inf`` when ``noisy == clean``; ``-inf`` for a silent ``clean`` with noise. Arrays of equal
    shape.
    """
    c = np.asarray(clean, dtype=np.float64)
    n = np.asarray(noisy, dtype=np.float64) - c
    ps, pn = float(np.mean(c * c)), float(np.mean(n * n))
    if pn == 0.0:
        return math.inf
    if ps == 0.0:
        return -math.inf
    return 10.0 * math.log10(ps / pn)


# ----------------------------------------------------------------------------- images


def _check_image(image: Any, what: str) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise CorruptionError(f"{what}: expected a uint8 image (pixel intensity 0-255), got dtype {a.dtype}")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3))) or a.size == 0:
        raise CorruptionError(f"{what}: expected an image of shape (H, W) or (H, W, 3), got {a.shape}")
    return a


def occlusion_box(height: int, width: int, area_fraction: float, rng: np.random.Generator | int | None) -> tuple[int, int, int, int]:
    """The patch :func:`occlude` draws: ``(top, left, patch_height, patch_width)`` in pixels.

    The patch is a square of side ``s = round(sqrt(area_fraction * H * W))`` pixels, so its area
    is within one row of pixels of ``area_fraction * H * W`` (``|s**2 - a*H*W| <= s + 1/4``). When
    ``s`` exceeds the shorter side ``m = min(H, W)``, the patch becomes an ``m``-wide rectangle of
    length ``round(area_fraction * H * W / m)`` along the longer side. Its top-left corner is
    uniform over the positions where the patch lies entirely inside the image.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    area_fraction : float in [0, 1]
    rng : numpy.random.Generator, int or None

    Raises
    ------
    CorruptionError
        ``area_fraction`` outside [0, 1] or a non-positive size.
    """
    a = check_level("occlude", area_fraction)
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise CorruptionError(f"occlusion_box: image size must be positive, got {h}x{w}")
    area = a * h * w
    s = int(round(math.sqrt(area)))
    if s <= min(h, w):
        ph = pw = s
    else:
        m = min(h, w)
        long = min(int(round(area / m)), max(h, w))
        ph, pw = (long, m) if h >= w else (m, long)
    g = _rng(rng)
    top = int(g.integers(0, h - ph + 1))
    left = int(g.integers(0, w - pw + 1))
    return top, left, ph, pw


def border_value(image: np.ndarray) -> np.ndarray:
    """The background value of an image: the median of its outermost rows and columns, per
    channel, rounded to uint8 (0 for MNIST, 255 for Omniglot). Shape () or (3,)."""
    a = np.asarray(image)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]], axis=0)
    return np.round(np.median(border, axis=0)).astype(np.uint8)


def occlude(image: np.ndarray, area_fraction: float, rng: np.random.Generator | int | None,
            fill: int | str = "border") -> np.ndarray:
    """Occlude a random square patch covering ``area_fraction`` of the image area.

    Parameters
    ----------
    image : numpy.ndarray of shape (H, W) or (H, W, 3), uint8, pixel intensity 0-255
    area_fraction : float in [0, 1]
        Fraction of the image area (H * W pixels) to cover; the patch is drawn by
        :func:`occlusion_box` (a square of side ``round(sqrt(area_fraction * H * W))`` pixels,
        i.e. the area is exact to within one row of pixels).
    rng : numpy.random.Generator, int or None
    fill : int or "border", default "border"
        Value the patch is set to: ``"border"`` = the image's background as estimated by
        :func:`border_value` (median of the outermost pixels: 0 for MNIST), or a pixel intensity
        0-255.

    Returns
    -------
    numpy.ndarray, uint8, same shape as ``image`` (a new array)

    Raises
    ------
    CorruptionError
        Not a uint8 (H, W) / (H, W, 3) image, ``area_fraction`` outside [0, 1], or a bad ``fill``.
    """
    img = _check_image(image, "occlude")
    if isinstance(fill, str):
        if fill != "border":
            raise CorruptionError(f"occlude: fill must be 'border' or a pixel intensity 0-255, got {fill!r}")
        value = border_value(img)
    else:
        if not 0 <= int(fill) <= 255:
            raise CorruptionError(f"occlude: fill must be a pixel intensity 0-255, got {fill!r}")
        value = np.uint8(int(fill))
    top, left, ph, pw = occlusion_box(img.shape[0], img.shape[1], area_fraction, rng)
    out = img.copy()
    out[top : top + ph, left : left + pw] = value
    return out


def pixel_noise(image: np.ndarray, sigma: float, rng: np.random.Generator | int | None) -> np.ndarray:
    """Add Gaussian pixel noise: ``clip(round(image + sigma * N(0, 1)), 0, 255)`` per pixel and
    channel.

    Parameters
    ----------
    image : numpy.ndarray of shape (H, W) or (H, W, 3), uint8, pixel intensity 0-255
    sigma : float >= 0
        Noise standard deviation in pixel intensity units (0-255 scale; e.g. 25.5 = 10 % of the
        range). ``0`` returns a copy.
    rng : numpy.random.Generator, int or None

    Returns
    -------
    numpy.ndarray, uint8, same shape as ``image`` (a new array)

    Raises
    ------
    CorruptionError
        Not a uint8 image, or ``sigma`` negative / not finite.
    """
    img = _check_image(image, "pixel_noise")
    s = check_level("pixel_noise", sigma)
    if s == 0.0:
        return img.copy()
    noisy = img.astype(np.float64) + s * _rng(rng).standard_normal(img.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- tables


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """The generator that corrupts item ``item_id``: ``default_rng(SeedSequence([seed, h]))``,
    ``h`` = the first 8 bytes of sha256(item_id) as an unsigned integer."""
    h = int.from_bytes(hashlib.sha256(item_id.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed), h]))


def corrupt_table(table: ItemTable, modality: str, kind: str, level: float, seed: int = 0) -> ItemTable:
    """A copy of ``table`` whose ``modality`` payloads are decoded and corrupted in memory.

    Parameters
    ----------
    table : ItemTable
    modality : {"audio", "image"}
        Must match ``kind`` (``noise`` -> audio; ``occlude`` / ``pixel_noise`` -> image).
    kind : {"noise", "occlude", "pixel_noise"}
    level : float
        SNR in dB (``noise``), fraction of the image area (``occlude``), or pixel-noise standard
        deviation in intensity units 0-255 (``pixel_noise``).
    seed : int, default 0
        Item ``i`` uses :func:`item_rng` ``(seed, table.ids[i])``.

    Returns
    -------
    ItemTable
        Same ids, labels, class names, meta and other modalities; ``modality`` payloads are
        :class:`AudioClip` (float32 waveform at the file's own sample rate) resp. uint8 arrays
        ((H, W) or (H, W, 3)), ``None`` where the item lacks the modality. Its ``name`` is
        ``table.name + Corruption(kind, level, seed).tag()``, e.g.
        ``"fsdd/all+noise(snr=10.0,seed=0)"`` or ``"mnist/test+occlude(area=0.25,seed=0)"``, so the
        feature cache keeps clean and corrupted features apart. ``info["corruption"]`` describes
        the corruption (kind, modality, level, unit, seed, and ``n_silent``: audio clips left
        unchanged because their signal power is 0).

    Raises
    ------
    CorruptionError
        Unknown kind, a level out of range, ``modality`` not matching ``kind``, or a table without
        any item of ``modality``.
    fewmm.errors.DataError
        A payload cannot be read.
    """
    spec = Corruption(kind, level, seed)
    if modality != spec.modality:
        raise CorruptionError(f"corruption {kind!r} applies to {spec.modality!r}, not {modality!r}")
    payloads = table.modalities.get(modality)
    if payloads is None or all(p is None for p in payloads):
        raise CorruptionError(f"table {table.name!r} has no {modality!r} item to corrupt (has: {sorted(table.modalities)})")
    out: list[Any] = []
    n_silent = 0
    for item_id, p in zip(table.ids, payloads):
        if p is None:
            out.append(None)
            continue
        rng = item_rng(spec.seed, item_id)
        if kind == "noise":
            clip = read_audio(p)
            if not np.any(clip.waveform):
                n_silent += 1
            out.append(AudioClip(add_white_noise(clip.waveform, spec.level, rng), clip.sample_rate))
        elif kind == "occlude":
            out.append(occlude(read_image(p), spec.level, rng))
        else:
            out.append(pixel_noise(read_image(p), spec.level, rng))
    info = dict(table.info)
    info["corruption"] = {**spec.as_dict(), "source_table": table.name, "n_silent": n_silent}
    mods = dict(table.modalities)
    mods[modality] = out
    return ItemTable(
        name=table.name + spec.tag(),
        ids=list(table.ids),
        labels=table.labels.copy(),
        class_names=list(table.class_names),
        modalities=mods,
        meta={k: np.asarray(v).copy() for k, v in table.meta.items()},
        source_files=list(table.source_files),
        info=info,
    )


__all__ = [
    "KINDS",
    "Corruption",
    "CorruptionError",
    "parse_corruption",
    "check_level",
    "add_white_noise",
    "measured_snr_db",
    "occlusion_box",
    "border_value",
    "occlude",
    "pixel_noise",
    "item_rng",
    "corrupt_table",
]
