"""MNIST handwritten digits (LeCun, Bottou, Bengio & Haffner, 1998): the 10,000-image test set.

Source: http://yann.lecun.com/exdb/mnist/ (idx ``.gz`` files). Licence: CC BY-SA 3.0.
"""

from __future__ import annotations

import gzip

import numpy as np

from ...errors import DataError
from ..download import locate
from ..table import ItemTable
from . import check_split, register

SPLITS = ("test",)
DEFAULT_SPLIT = "test"
_IMAGES = "t10k-images-idx3-ubyte.gz"
_LABELS = "t10k-labels-idx1-ubyte.gz"


def read_idx(path, magic: int, ndim: int) -> np.ndarray:
    """Parse a gzip-compressed idx file (big-endian header) into a read-only uint8 array.

    Raises
    ------
    fewmm.errors.DataError
        The file is not gzip, has the wrong magic number or a size that does not match its header.
    """
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip-compressed idx file: {e}") from None
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: idx file too short ({len(data)} bytes)")
    got_magic = int.from_bytes(data[:4], "big")
    if got_magic != magic:
        raise DataError(f"{path}: idx magic number {got_magic}, expected {magic}")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    n = int(np.prod(dims))
    if len(data) - header != n:
        raise DataError(f"{path}: idx header says {dims} ({n} bytes), file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@register("mnist", help="MNIST handwritten digits, 10,000-image test set, 28x28 (CC BY-SA 3.0)")
def load_mnist(split: str | None = None, root=None, download: bool = True) -> ItemTable:
    """MNIST test set: 10,000 28x28 grayscale handwritten digits.

    Parameters
    ----------
    split : {"test"}, default "test"
        Only the official test set is supported: the shared data folder does not hold the
        60,000 train images. Asking for ``"train"`` raises :class:`DataError`.
    root : path or None
        Data root; files ``<root>/mnist_idx/t10k-images-idx3-ubyte.gz`` and
        ``t10k-labels-idx1-ubyte.gz``.
    download : bool
        Fetch the two files (sha256-checked) into the user cache when missing.

    Returns
    -------
    ItemTable
        Modality ``"image"``: read-only numpy arrays, uint8, shape (28, 28), 0 = background,
        255 = ink (decoded at load time: 7.8 MB). ``ids``: ``"t10k/00000"`` .. ``"t10k/09999"``
        in file order. ``class_names``: ``"0"``..``"9"``.

    Raises
    ------
    fewmm.errors.DataError
        ``split="train"`` or another unknown split, or a malformed idx file.
    fewmm.errors.DataNotFoundError
        The files are missing and cannot be downloaded.
    """
    if split == "train":
        raise DataError(
            "mnist: split 'train' is not supported: only the 10,000-image test set is loaded "
            "(the 60,000 train images are not in the shared data folder); use split='test'"
        )
    split = check_split("mnist", split, SPLITS, DEFAULT_SPLIT)
    folder = locate("mnist", root, download,
                    lambda d: (d / _IMAGES).is_file() and (d / _LABELS).is_file(),
                    f"{_IMAGES} and {_LABELS}", only=[_IMAGES, _LABELS])
    folder = folder.resolve()
    images = read_idx(folder / _IMAGES, 2051, 3)
    labels = read_idx(folder / _LABELS, 2049, 1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{folder / _LABELS}: label {labels.max()} outside 0..9")
    n = images.shape[0]
    return ItemTable(
        name=f"mnist/{split}",
        ids=[f"t10k/{i:05d}" for i in range(n)],
        labels=labels.astype(np.int64),
        class_names=[str(d) for d in range(10)],
        modalities={"image": list(images)},
        source_files=[folder / _IMAGES, folder / _LABELS],
        info={
            "dataset": "mnist",
            "split": split,
            "licence": "CC BY-SA 3.0",
            "source_url": "http://yann.lecun.com/exdb/mnist/",
            "citation": "LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning applied "
            "to document recognition, Proc. IEEE",
            "split_notes": "official test set only (10,000 images); the train images are not "
            "available in the shared data folder",
        },
    )
