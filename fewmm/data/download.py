"""Finding a data set's files, and downloading them from their official source when missing.

Where fewmm looks (see :func:`fewmm.paths.data_root`): the ``root`` argument / ``--data-root``,
else ``$FEWMM_DATA``, else the user cache folder ``~/.cache/fewmm/data``. A data set lives in
its own sub-folder there (``omniglot/``, ``fsdd/``, ``esc50/``, ``mnist_idx/``, ``banking77/``).

When the files are not there and ``download=True``, :func:`locate` downloads them from the
official public source into the user cache folder (standard-library ``urllib`` only, a short
socket timeout so that a machine without network fails within seconds), checks each file's
sha256 where one is pinned below, and loads from there. When that fails too it raises one
:class:`~fewmm.errors.DataNotFoundError` naming the data set, the folder looked in and where
that folder came from, why the download failed, and how to fix it.

Pinned checksums
----------------
The sha256 values below were taken from ``MANIFEST.sha256`` of the project's shared data folder,
for the files there that are byte-for-byte the files the official sources publish: the two
Omniglot zips (and the one-shot runs' ``all_runs.zip``, whose git blob id equals that of
``python/one-shot-classification/all_runs.zip`` in the official repository, 3c49ffe2), the MNIST ``.gz`` files and the BANKING77 CSVs. Not pinned, and said so here:

* BANKING77 ``categories.json``: the shared copy may be re-formatted, so its hash is not known
  to equal the published file's; after download it is only checked to be a JSON list of 77 names.
* FSDD and ESC-50 are published as GitHub repository archives (``archive/...zip``). GitHub builds
  those archives on the fly and does not promise byte-stable output, so NO archive hash is
  pinned; after extraction only the expected number of files is checked (3,000 WAVs for FSDD
  v1.0.10, 2,000 WAVs for ESC-50). A user who needs a verified copy should compare against a
  checksum list of their own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from ..errors import DataNotFoundError, FewmmError
from ..paths import data_root, user_cache_dir

log = logging.getLogger("fewmm.data")

#: Socket timeout (seconds) of every download: connecting, and each read while streaming.
DOWNLOAD_TIMEOUT_S = 5.0
_CHUNK = 1 << 20


class DownloadError(FewmmError):
    """A download failed (network, HTTP status, checksum, archive content). Internal: callers
    see it wrapped in a :class:`~fewmm.errors.DataNotFoundError`."""


@dataclass(frozen=True)
class RemoteFile:
    """One file published at ``urls`` (tried in order), stored as ``dest`` in the data set folder."""

    dest: str
    urls: tuple[str, ...]
    sha256: str | None


@dataclass(frozen=True)
class RemoteArchive:
    """A zip archive whose members are extracted into the data set folder.

    ``extract`` maps a path prefix inside the archive (after dropping the archive's top folder,
    e.g. ``ESC-50-master/``) to a destination prefix; ``expect`` maps a destination folder to
    the number of files that must end up there.
    """

    urls: tuple[str, ...]
    sha256: str | None
    extract: tuple[tuple[str, str], ...]
    expect: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Source:
    """Where a data set comes from."""

    dataset: str
    folder: str
    homepage: str
    files: tuple[RemoteFile | RemoteArchive, ...] = field(default_factory=tuple)


_OMNIGLOT = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
_OMNIGLOT_2 = "https://github.com/brendenlake/omniglot/raw/master/python/"
_MNIST = "http://yann.lecun.com/exdb/mnist/"  # the original; often refuses (HTTP 403) nowadays
_MNIST_2 = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror, same bytes
_BANKING = "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data/"

SOURCES: dict[str, Source] = {
    "omniglot": Source(
        "omniglot",
        "omniglot",
        "https://github.com/brendenlake/omniglot",
        (
            RemoteFile(
                "images_background.zip",
                (_OMNIGLOT + "images_background.zip", _OMNIGLOT_2 + "images_background.zip"),
                "a00d4fd8cfec44ed0b67c032027dc9b3504242907b8e85dbf5ea931bd35af4fc",
            ),
            RemoteFile(
                "images_evaluation.zip",
                (_OMNIGLOT + "images_evaluation.zip", _OMNIGLOT_2 + "images_evaluation.zip"),
                "1e38c900e62a4c12e3f4870053d234fc01fc0859137660d0b608b9bb5a69a100",
            ),
            RemoteFile(  # the 20 one-shot classification runs (fewmm.data.load_omniglot_runs)
                "all_runs.zip",
                (_OMNIGLOT + "one-shot-classification/all_runs.zip", _OMNIGLOT_2 + "one-shot-classification/all_runs.zip"),
                "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
            ),
        ),
    ),
    "mnist": Source(
        "mnist",
        "mnist_idx",
        "http://yann.lecun.com/exdb/mnist/",
        (
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                (_MNIST + "t10k-images-idx3-ubyte.gz", _MNIST_2 + "t10k-images-idx3-ubyte.gz"),
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                (_MNIST + "t10k-labels-idx1-ubyte.gz", _MNIST_2 + "t10k-labels-idx1-ubyte.gz"),
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
    ),
    "banking77": Source(
        "banking77",
        "banking77",
        "https://github.com/PolyAI-LDN/task-specific-datasets",
        (
            RemoteFile(
                "train.csv", (_BANKING + "train.csv",), "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b"
            ),
            RemoteFile(
                "test.csv", (_BANKING + "test.csv",), "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d"
            ),
            RemoteFile("categories.json", (_BANKING + "categories.json",), None),  # not pinned: see module doc
        ),
    ),
    "fsdd": Source(
        "fsdd",
        "fsdd",
        "https://github.com/Jakobovski/free-spoken-digit-dataset",
        (
            RemoteArchive(
                ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip",),
                None,  # GitHub archives are not byte-stable: no hash pinned (see module doc)
                (("recordings/", "recordings/"),),
                (("recordings", 3000),),
            ),
        ),
    ),
    "esc50": Source(
        "esc50",
        "esc50",
        "https://github.com/karolpiczak/ESC-50",
        (
            RemoteArchive(
                ("https://github.com/karolpiczak/ESC-50/archive/master.zip",),
                None,  # GitHub archives are not byte-stable: no hash pinned (see module doc)
                (("audio/", "audio/"), ("meta/esc50.csv", "esc50.csv")),
                (("audio", 2000),),
            ),
        ),
    ),
}


# ------------------------------------------------------------------------ downloading


def download_file(url: str, dest: Path, sha256: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``, renamed only once complete and verified).

    Parameters
    ----------
    url : str
        ``http(s)://`` or ``file://`` URL.
    dest : pathlib.Path
        Final file path; parent folders are created.
    sha256 : str or None
        Expected hex digest; on mismatch the partial file is deleted.
    timeout : float
        Socket timeout in seconds (connect and each read).

    Raises
    ------
    DownloadError
        Network error, HTTP error status, or sha256 mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    log.info("downloading %s -> %s", url, dest)
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "fewmm"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as out:
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {e.reason}") from None
    except (OSError, ValueError) as e:  # timeouts, connection resets, bad URLs
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {type(e).__name__}: {e}") from None
    got = h.hexdigest()
    if sha256 is not None and got != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: sha256 mismatch: got {got}, expected {sha256} (file deleted)")
    os.replace(part, dest)
    return dest


def _try_urls(urls: Sequence[str], dest: Path, sha256: str | None, timeout: float) -> Path:
    errors = []
    for url in urls:
        try:
            return download_file(url, dest, sha256, timeout)
        except DownloadError as e:
            errors.append(str(e))
    raise DownloadError("; ".join(errors))


def _extract_archive(archive: Path, spec: RemoteArchive, folder: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{archive}: not a readable zip archive: {e}") from None
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            parts = PurePosixPath(info.filename).parts
            if len(parts) < 2 or any(p in ("..", "") for p in parts) or info.filename.startswith("/"):
                continue
            inner = "/".join(parts[1:])  # drop the archive's top folder
            for prefix, dest_prefix in spec.extract:
                if inner == prefix or (prefix.endswith("/") and inner.startswith(prefix)):
                    target = folder / (dest_prefix + inner[len(prefix):])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                    break
    for sub, count in spec.expect:
        n = sum(1 for p in (folder / sub).glob("*") if p.is_file()) if (folder / sub).is_dir() else 0
        if n < count:
            raise DownloadError(f"{archive}: expected {count} files in {sub}/ after extraction, found {n}")


def fetch(dataset: str, dest_root: str | os.PathLike | None = None, only: Sequence[str] | None = None,
          timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download a data set from its official source.

    Parameters
    ----------
    dataset : str
        A key of :data:`SOURCES` (``"omniglot"``, ``"mnist"``, ``"banking77"``, ``"fsdd"``,
        ``"esc50"``).
    dest_root : path or None
        Data root to download into; default the user cache folder ``~/.cache/fewmm/data``.
    only : sequence of str or None
        Download only these single files (``RemoteFile.dest``); archives are always fetched whole.
    timeout : float
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        The data set folder, ``dest_root / SOURCES[dataset].folder``.

    Raises
    ------
    DownloadError
        Any file could not be downloaded or verified.
    """
    src = SOURCES[dataset]
    folder = Path(dest_root) if dest_root is not None else user_cache_dir() / "data"
    folder = folder / src.folder
    for item in src.files:
        if isinstance(item, RemoteFile):
            if only is not None and item.dest not in only:
                continue
            if (folder / item.dest).is_file():
                continue
            _try_urls(item.urls, folder / item.dest, item.sha256, timeout)
        else:
            tmp = folder / ".archive.zip"
            _try_urls(item.urls, tmp, item.sha256, timeout)
            try:
                _extract_archive(tmp, item, folder)
            finally:
                tmp.unlink(missing_ok=True)
    return folder


def manual_instructions(dataset: str, folder: Path) -> list[str]:
    """Lines telling a user which URL to fetch by hand and where to put it."""
    src = SOURCES.get(dataset)
    if src is None:
        return []
    lines = []
    for item in src.files:
        if isinstance(item, RemoteFile):
            lines.append(f"  {item.urls[0]}  ->  {folder / item.dest}")
        else:
            what = ", ".join(f"{a} -> {folder / b}" for a, b in item.extract)
            lines.append(f"  {item.urls[0]}  (unzip; {what})")
    return lines


# ---------------------------------------------------------------------------- locating

_SOURCE_WORDS = {
    "argument": "given as the root argument / --data-root",
    "$FEWMM_DATA": "from $FEWMM_DATA",
    "user cache": "the user cache folder, used because no root was given and $FEWMM_DATA is unset",
}


def locate(dataset: str, root: str | os.PathLike | None, download: bool,
           present: Callable[[Path], bool], expect: str, only: Sequence[str] | None = None) -> Path:
    """Return the folder holding ``dataset``'s files, downloading them if needed and allowed.

    Parameters
    ----------
    dataset : str
        Data set name (a key of :data:`SOURCES`, or any name when ``download`` is False).
    root : path or None
        Data root as given by the user (resolved with :func:`fewmm.paths.data_root`).
    download : bool
        Try the official source (into the user cache folder) when the files are missing.
    present : callable (pathlib.Path) -> bool
        True when a candidate data set folder holds what the loader needs.
    expect : str
        What the loader needs, in words, for the error message (e.g. ``"images_evaluation.zip"``).
    only : sequence of str or None
        Passed to :func:`fetch`.

    Raises
    ------
    fewmm.errors.DataNotFoundError
        The files are not in the data root and could not be downloaded (or ``download=False``).
    """
    base, how = data_root(root)
    src = SOURCES.get(dataset)
    folder = base / (src.folder if src else dataset)
    if present(folder):
        return folder
    why: str
    cache_folder = user_cache_dir() / "data" / (src.folder if src else dataset)
    if not download:
        why = "Download not attempted (download=False)."
    elif src is None:
        why = "No download source is known for it."
    else:
        if cache_folder != folder and present(cache_folder):
            return cache_folder
        existed = cache_folder.exists()
        try:
            got = fetch(dataset, user_cache_dir() / "data", only=only)
            if present(got):
                return got
            why = f"Downloaded into {got}, but the expected files are still not there."
        except DownloadError as e:
            why = f"Download from the official source into {cache_folder} failed: {e}"
            if not existed:
                try:  # leave no empty folder behind
                    cache_folder.rmdir()
                except OSError:
                    pass
    lines = [
        f"data set {dataset!r} not found: expected {expect} in {folder}",
        f"(data root {base}: {_SOURCE_WORDS.get(how, how)}).",
        why,
        f"Fix: pass --data-root DIR (root=DIR in Python) or set FEWMM_DATA=DIR, where DIR holds "
        f"{folder.name}/ with those files",
    ]
    manual = manual_instructions(dataset, folder)
    if manual:
        lines[-1] += "; or fetch them by hand:"
        lines += manual
        if src is not None:
            lines.append(f"  (source: {src.homepage})")
    else:
        lines[-1] += "."
    raise DataNotFoundError("\n".join(lines))


__all__ = [
    "SOURCES",
    "DOWNLOAD_TIMEOUT_S",
    "DownloadError",
    "RemoteFile",
    "RemoteArchive",
    "Source",
    "download_file",
    "fetch",
    "locate",
    "manual_instructions",
]
