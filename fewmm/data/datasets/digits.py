"""scikit-learn's embedded handwritten digits (UCI optdigits test part, Alpaydin & Kaynak 1998).

Source: ``sklearn.datasets.load_digits`` (ships inside scikit-learn; originally
https://archive.ics.uci.edu/dataset/80). Licence: CC BY 4.0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..table import ItemTable
from . import check_split, register

SPLITS = ("all",)
DEFAULT_SPLIT = "all"


@register("digits", help="scikit-learn's 1,797 8x8 handwritten digits, always available (CC BY 4.0)")
def load_digits(split: str | None = None, root=None, download: bool = True) -> ItemTable:
    """The 1,797 8x8 digit images that ship inside scikit-learn (no data root needed).

    Parameters
    ----------
    split : {"all"}, default "all"
    root, download :
        Ignored (the data is part of scikit-learn).

    Returns
    -------
    ItemTable
        Modality ``"image"``: numpy arrays, uint8, shape (8, 8): sklearn's 0..16 counts scaled to
        0..255 (``round(v * 255 / 16)``), 255 = ink. ``ids``: ``"digits/0000"`` .. in sklearn's
        order. ``class_names``: ``"0"``..``"9"``.
    """
    import sklearn.datasets as skd

    split = check_split("digits", split, SPLITS, DEFAULT_SPLIT)
    bunch = skd.load_digits()
    images = np.round(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images.setflags(write=False)
    data_file = Path(skd.__file__).parent / "data" / "digits.csv.gz"
    import sklearn

    return ItemTable(
        name=f"digits/{split}",
        ids=[f"digits/{i:04d}" for i in range(len(images))],
        labels=np.asarray(bunch.target, dtype=np.int64),
        class_names=[str(d) for d in range(10)],
        modalities={"image": list(images)},
        source_files=[data_file] if data_file.is_file() else [],
        info={
            "dataset": "digits",
            "split": split,
            "licence": "CC BY 4.0",
            "source_url": "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
            "loader": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
            "split_notes": "one split of 1,797 images (about 180 per class); 8x8, 17 grey levels",
        },
    )
