"""Omniglot at 28x28 for training backbones from scratch, with the split and rotations written down.

Protocol (following Vinyals et al. 2016 and Snell et al. 2017, as far as it can be reproduced
offline):

* All 1,623 characters (background + evaluation sets), 20 drawings each, resized from 105x105 to
  28x28 with PIL's box filter (area averaging) and inverted so strokes are 1 and the background 0
  (float32 in [0, 1]).
* Character split: the characters sorted by ``"<alphabet>/characterNN"``, shuffled with
  ``numpy.random.default_rng(1)``; the first 1,028 are training, the next 172 validation, the last
  423 test — the sizes of Vinyals' split (Snell et al.'s ``trainval`` = 1,200 = 1,028 + 172), but
  not its exact character lists, which are not available offline. The split is a pure function of
  the sorted names and the seed (:func:`character_split`).
* Rotations by 0, 90, 180 and 270 degrees are new classes in every split, at training AND test
  time (as in Snell et al.): 4,112 training, 688 validation and 1,692 test classes.

The decoded array is cached (safetensors) in the feature cache folder, keyed by the sha256 of the
two Omniglot zip files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..util import atomic_write

N_TRAIN, N_VAL, N_TEST = 1028, 172, 423
SPLIT_SEED = 1
ROTATIONS = (0, 1, 2, 3)  # multiples of 90 degrees
SIZE = 28


def character_split(names: list[str], seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Character indices (into ``names``) of the train / val / test splits (see the module notes).

    Raises
    ------
    ValueError
        Not 1,623 distinct names.
    """
    if len(names) != N_TRAIN + N_VAL + N_TEST or len(set(names)) != len(names):
        raise ValueError(f"expected {N_TRAIN + N_VAL + N_TEST} distinct Omniglot characters, got {len(names)} ({len(set(names))} distinct)")
    order = np.argsort(np.asarray(names), kind="stable")
    perm = order[np.random.default_rng(seed).permutation(len(names))]
    return {"train": np.sort(perm[:N_TRAIN]), "val": np.sort(perm[N_TRAIN : N_TRAIN + N_VAL]), "test": np.sort(perm[N_TRAIN + N_VAL :])}


def load_omniglot28(root=None, cache=None, progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """All Omniglot characters at 28x28.

    Returns
    -------
    images : torch.Tensor of shape (1623, 20, 28, 28), uint8, 255 = stroke
    names : list of str, ``"<background|evaluation>:<Alphabet>/characterNN"``, the row order

    Raises
    ------
    fewmm.errors.DataNotFoundError
        Omniglot is not in the data root.
    """
    from safetensors.torch import load_file, save_file
    from ..progress import progress_bar

    from .. import data as D
    from ..data.io import read_image
    from ..encoders.base import file_sha256
    from ..paths import feature_cache_dir

    tables = [D.load("omniglot", split=s, root=root) for s in ("background", "evaluation")]
    names = [f"{t.name.split('/')[1]}:{c}" for t in tables for c in t.class_names]
    key = hashlib.sha256("|".join(file_sha256(f) for t in tables for f in t.source_files if Path(f).is_file()).encode()).hexdigest()[:16]
    path = feature_cache_dir(cache) / "backbones" / f"omniglot28-box-{key}.safetensors"
    if path.is_file():
        try:
            d = load_file(str(path))
            imgs = d["images"]
            if tuple(imgs.shape) == (len(names), 20, SIZE, SIZE) and imgs.dtype == torch.uint8:
                return imgs, names
        except Exception:
            pass  # damaged cache file: rebuild it
    out = np.zeros((len(names), 20, SIZE, SIZE), dtype=np.uint8)
    row = 0
    bar = progress_bar(total=sum(len(t) for t in tables), desc="omniglot 28x28", unit="img", disable=not progress, leave=False)
    for t in tables:
        counts = np.zeros(len(t.class_names), dtype=np.int64)
        for payload, c in zip(t.modalities["image"], t.labels):
            if counts[c] >= 20:
                raise ValueError(f"omniglot: character {t.class_names[c]} has more than 20 drawings")
            out[row + c, counts[c]] = to28(read_image(payload))  # read_image: 0 = stroke, 255 = paper
            counts[c] += 1
            bar.update(1)
        if (counts != 20).any():
            bad = [t.class_names[i] for i in np.flatnonzero(counts != 20)[:5]]
            raise ValueError(f"omniglot: characters without exactly 20 drawings: {bad}")
        row += len(t.class_names)
    bar.close()
    imgs = torch.from_numpy(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: save_file({"images": imgs}, str(p)))
    return imgs, names


def rotated_classes(images: torch.Tensor, chars: np.ndarray, rotations=ROTATIONS) -> torch.Tensor:
    """Images of (character, rotation) classes: (len(chars) * len(rotations), 20, 28, 28), in the
    order char-major (class ``i * len(rotations) + r`` = character ``chars[i]`` rotated by
    ``rotations[r] * 90`` degrees counter-clockwise)."""
    sel = images[torch.as_tensor(chars)]
    return torch.stack([torch.rot90(sel, k=int(r), dims=(-2, -1)) for r in rotations], dim=1).flatten(0, 1).contiguous()


#: Background characters held out for validation in the one-shot challenge protocol
#: (:func:`background_split`): about 10% of the 964, drawn with ``default_rng(CHALLENGE_SPLIT_SEED)``.
CHALLENGE_N_VAL = 96
CHALLENGE_SPLIT_SEED = 1


def background_split(names: list[str], n_val: int = CHALLENGE_N_VAL, seed: int = CHALLENGE_SPLIT_SEED) -> dict[str, np.ndarray]:
    """Train / validation characters for the Omniglot one-shot challenge (Lake et al. 2015): the
    ``images_background`` characters only (964 characters, 30 alphabets); the evaluation
    alphabets, where the 20 challenge runs come from, are never used.

    The background characters (rows of :func:`load_omniglot28` whose name starts with
    ``"background:"``) sorted by name are shuffled with ``numpy.random.default_rng(seed)``; the
    first ``n_val`` are validation, the rest training.

    Parameters
    ----------
    names : list of str
        The row names of :func:`load_omniglot28` (``"<background|evaluation>:<Alphabet>/characterNN"``).
    n_val : int
        Validation characters (default 96, about 10%).
    seed : int

    Returns
    -------
    dict with ``"train"`` and ``"val"``: sorted int64 indices into ``names``.

    Raises
    ------
    ValueError
        Not 964 distinct background characters, or ``n_val`` not in [1, 963].
    """
    bg = [i for i, n in enumerate(names) if n.startswith("background:")]
    if len(bg) != 964 or len({names[i] for i in bg}) != 964:
        raise ValueError(f"expected the 964 distinct Omniglot background characters, got {len(bg)} names starting with 'background:'")
    if not 1 <= n_val < len(bg):
        raise ValueError(f"n_val must be in [1, {len(bg) - 1}], got {n_val}")
    bg = np.asarray(bg)[np.argsort([names[i] for i in bg], kind="stable")]
    perm = bg[np.random.default_rng(seed).permutation(len(bg))]
    return {"train": np.sort(perm[n_val:]), "val": np.sort(perm[:n_val])}


def to28(ink_white: np.ndarray) -> np.ndarray:
    """One 105x105 Omniglot drawing as read by :func:`fewmm.data.read_image` (uint8, 0 = ink,
    255 = paper) -> the 28x28 training input of :func:`load_omniglot28`: inverted (255 = stroke)
    and resized with PIL's box filter. Returns uint8 (28, 28)."""
    from PIL import Image

    arr = np.asarray(ink_white)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W) greyscale drawing (0 = ink, 255 = paper), got {arr.dtype} {arr.shape}")
    return np.asarray(Image.fromarray(255 - arr).resize((SIZE, SIZE), Image.BOX), dtype=np.uint8)
