"""On-disk feature cache: frozen encoders run once per (encoder, weights, preprocessing, items).

A cache entry is one safetensors file holding ``features`` (n, dim) float32 and ``mask`` (n,)
uint8 (1 where the item has the modality), with metadata: the full key (encoder name, weights id,
preprocessing, data set name, modality, sha256 of the ordered item ids), the shapes, and a sha256
of the tensor bytes. Loading checks all of it; a truncated, corrupted or mismatched file is
reported with a warning, deleted and rebuilt - never used. Files are written atomically
(temporary file + rename), so an interrupted run leaves no half-written entry. No pickle.

Extraction fills the cache in chunks: while an encoder runs, every finished chunk of items (at
least every ``chunk_items`` items or ``chunk_seconds`` seconds, and whatever was encoded when the
run is interrupted or fails) is saved as a part file in ``<entry>.parts/``, verified like an
entry (key, shapes, checksum). The next run with the same key loads the parts and encodes only
the rest, starting at a batch boundary, so the features are bit for bit those of an
uninterrupted run; once complete, the entry is written and the parts removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.table import ItemTable, ids_digest
from .paths import feature_cache_dir
from .util import atomic_write, sha256_bytes

log = logging.getLogger(__name__)
CACHE_VERSION = "2"


@dataclass
class FeatureSet:
    """Features of one modality for every item of a table.

    Attributes
    ----------
    features : torch.Tensor of shape (n, dim), float32 (zero rows where ``mask`` is False)
    mask : numpy.ndarray of shape (n,), bool
    key : dict
        What produced them (see :func:`cache_key`).
    cache_hit : bool
        True when read from the cache without running the encoder.
    path : pathlib.Path or None
        The cache file.
    resumed_items : int
        Items whose features came from the part files of an interrupted extraction (0 when the
        encoder ran on every item, or on a cache hit).
    """

    features: torch.Tensor
    mask: np.ndarray
    key: dict
    cache_hit: bool
    path: Path | None = None
    resumed_items: int = 0


def payload_fingerprint(payloads) -> str:
    """sha256 over what identifies each payload's content: for files, the resolved absolute path
    (``os.path.realpath``, so the same file reached through a relative data root from another
    folder, or through a symlink, is the same payload) + zip member + size + modification time (so
    an edited or replaced file is re-embedded); for in-memory arrays, audio clips and texts, their
    bytes. Missing payloads (None) count as such."""
    import numpy as _np

    from .data.table import AudioClip, FileRef

    h = hashlib.sha256()
    stats: dict = {}
    for p in payloads:
        if p is None:
            h.update(b"none\0")
        elif isinstance(p, FileRef):
            st = stats.get(p.path)
            if st is None:
                real = os.path.realpath(p.path)
                try:
                    s = os.stat(real)
                    st = stats[p.path] = (real, f"{s.st_size}:{s.st_mtime_ns}")
                except OSError:
                    st = stats[p.path] = (real, "missing")
            h.update(f"file:{st[0]}|{p.member}|{st[1]}\0".encode())
        elif isinstance(p, AudioClip):
            h.update(f"audio:{p.sample_rate}:".encode())
            h.update(_np.ascontiguousarray(p.waveform).tobytes())
        elif isinstance(p, _np.ndarray):
            h.update(f"array:{p.shape}:{p.dtype}:".encode())
            h.update(_np.ascontiguousarray(p).tobytes())
        elif isinstance(p, str):
            h.update(b"text:" + p.encode("utf-8") + b"\0")
        elif isinstance(p, (os.PathLike,)):
            h.update(f"path:{os.fspath(p)}\0".encode())
        elif hasattr(p, "tobytes"):  # PIL images
            h.update(f"image:{getattr(p, 'mode', '')}:{getattr(p, 'size', '')}:".encode())
            h.update(p.tobytes())
        else:
            h.update(f"other:{p!r}\0".encode())
    return h.hexdigest()


def cache_key(encoder, table: ItemTable, modality: str) -> dict:
    """The identity of a feature table: encoder name + weights id + preprocessing + data set
    (its payload source, :attr:`ItemTable.payload_name`, else its name) + modality + sha256 of the
    ordered item ids (+ the cache format version). Labels are not part of it."""
    return {
        "version": CACHE_VERSION,
        **encoder.cache_key,
        "dataset": table.payload_name or table.name,
        "modality": modality,
        "n_items": len(table),
        "ids_sha256": ids_digest(table.ids),
        "payloads_sha256": payload_fingerprint(table.modalities.get(modality, [])),
    }


def _key_digest(key: dict) -> str:
    return sha256_bytes(json.dumps(key, sort_keys=True).encode())


def _tensor_digest(features: torch.Tensor, mask: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(features.contiguous().numpy().tobytes())
    h.update(mask.contiguous().numpy().tobytes())
    return h.hexdigest()


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)[:80]


class FeatureCache:
    """A folder of cached feature tables.

    Parameters
    ----------
    root : path, optional
        Default: ``$FEWMM_CACHE`` or ``~/.cache/fewmm/features``.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = feature_cache_dir(root)

    def path_for(self, key: dict) -> Path:
        return self.root / _safe(key["encoder"]) / f"{_safe(key['dataset'])}-{key['modality']}-{_key_digest(key)[:16]}.safetensors"

    def load(self, key: dict) -> FeatureSet | None:
        """Return the cached features for ``key``, or None when absent or invalid (invalid files
        are deleted with a warning naming the file and the problem)."""
        path = self.path_for(key)
        if not path.exists():
            return None
        problem = None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                feats = f.get_tensor("features")
                mask = f.get_tensor("mask")
            if meta.get("key_sha256") != _key_digest(key) or json.loads(meta.get("key", "{}")) != key:
                problem = "its key does not match (different encoder, weights, preprocessing or items)"
            elif feats.shape != (key["n_items"], int(meta.get("dim", -1))) or mask.shape != (key["n_items"],):
                problem = f"its shapes {tuple(feats.shape)}/{tuple(mask.shape)} do not match {key['n_items']} items"
            elif meta.get("data_sha256") != _tensor_digest(feats, mask):
                problem = "its data checksum does not match (corrupted)"
        except Exception as e:  # truncated / not a safetensors file
            problem = f"it cannot be read ({type(e).__name__}: {e})"
        if problem:
            warnings.warn(f"feature cache file {path} is not usable: {problem}; rebuilding it", stacklevel=2)
            try:
                path.unlink()
            except OSError:
                pass
            return None
        return FeatureSet(feats.float(), mask.numpy().astype(bool), key, cache_hit=True, path=path)

    def save(self, key: dict, features: torch.Tensor, mask: np.ndarray) -> Path:
        """Write atomically; returns the file path."""
        from safetensors.torch import save_file

        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        feats = features.detach().cpu().float().contiguous()
        m = torch.as_tensor(np.asarray(mask, dtype=np.uint8))
        meta = {
            "key": json.dumps(key, sort_keys=True),
            "key_sha256": _key_digest(key),
            "dim": str(feats.shape[1]),
            "data_sha256": _tensor_digest(feats, m),
        }
        atomic_write(path, lambda p: save_file({"features": feats, "mask": m}, str(p), metadata=meta))
        return path


def _read_verified(path: Path, key: dict, what: str):
    """(features, mask, metadata) of a cache or part file, or a problem string."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            feats = f.get_tensor("features")
            mask = f.get_tensor("mask")
    except Exception as e:  # truncated / not a safetensors file
        return f"it cannot be read ({type(e).__name__}: {e})"
    if meta.get("key_sha256") != _key_digest(key) or json.loads(meta.get("key", "{}")) != key:
        return f"its key does not match this {what}"
    if meta.get("data_sha256") != _tensor_digest(feats, mask):
        return "its data checksum does not match (corrupted)"
    return feats, mask, meta


class _Parts:
    """Part files of one unfinished cache entry: ``<entry>.parts/<start>-<end>.safetensors``, each
    holding the features of the items ``start:end`` of the items to encode (in table order)."""

    def __init__(self, store: "FeatureCache", key: dict):
        self.key = key
        entry = store.path_for(key)
        self.dir = entry.with_name(entry.stem + ".parts")

    def load(self, dim: int) -> tuple[int, torch.Tensor | None]:
        """(n_done, features (n_done, dim)) of the contiguous verified parts from item 0; a bad or
        non-contiguous part and every part after it are deleted with a warning."""
        if not self.dir.is_dir():
            return 0, None
        files = []
        for f in self.dir.glob("*.safetensors"):
            try:
                a, b = (int(x) for x in f.stem.split("-"))
                files.append((a, b, f))
            except ValueError:
                continue
        files.sort()
        n, chunks = 0, []
        for i, (a, b, f) in enumerate(files):
            got = _read_verified(f, self.key, "entry") if a == n else "it does not continue the parts before it"
            if not isinstance(got, str) and tuple(got[0].shape) != (b - a, dim):
                got = f"its shape {tuple(got[0].shape)} is not ({b - a}, {dim})"
            if isinstance(got, str):
                warnings.warn(f"feature cache part {f} is not usable: {got}; encoding from item {n} again", stacklevel=3)
                for _, _, g in files[i:]:
                    g.unlink(missing_ok=True)
                break
            chunks.append(got[0].float())
            n = b
        return n, (torch.cat(chunks) if chunks else None)

    def save(self, start: int, feats: torch.Tensor) -> None:
        from safetensors.torch import save_file

        self.dir.mkdir(parents=True, exist_ok=True)
        feats = feats.detach().cpu().float().contiguous()
        m = torch.ones(len(feats), dtype=torch.uint8)
        meta = {"key": json.dumps(self.key, sort_keys=True), "key_sha256": _key_digest(self.key),
                "data_sha256": _tensor_digest(feats, m), "start": str(start), "end": str(start + len(feats))}
        path = self.dir / f"{start:09d}-{start + len(feats):09d}.safetensors"
        atomic_write(path, lambda p: save_file({"features": feats, "mask": m}, str(p), metadata=meta))

    def clear(self) -> None:
        if self.dir.is_dir():
            for f in self.dir.iterdir():
                f.unlink(missing_ok=True)
            try:
                self.dir.rmdir()
            except OSError:
                pass


def saved_parts(exc: BaseException) -> dict | None:
    """What :func:`embed_table` saved as cache parts before ``exc`` (an interruption or failure
    while encoding) stopped it: ``{"items": n, "parts": folder, "table": name, "encoder": name}``
    (n counts every item saved so far, earlier runs' parts included), or None when nothing was
    saved (no cache, nothing encoded yet, or ``exc`` came from elsewhere)."""
    return getattr(exc, "fewmm_saved_parts", None)


def embed_table(
    table: ItemTable,
    encoder,
    modality: str | None = None,
    cache: FeatureCache | str | os.PathLike | bool | None = None,
    progress: bool | None = None,
    batch_size: int | None = None,
    chunk_items: int = 4096,
    chunk_seconds: float = 60.0,
) -> FeatureSet:
    """Features of every item of ``table`` for one modality, from the cache when possible.

    Parameters
    ----------
    table : ItemTable
    encoder : fewmm.encoders.Encoder
    modality : str, optional
        Default: ``encoder.modality``.
    cache : FeatureCache, path, True/None (default cache folder) or False (no cache)
    progress : bool, optional
        Progress bar while encoding.
    batch_size : int, optional
        Encoder batch size (default: the encoder's).
    chunk_items, chunk_seconds : int, float
        While encoding, the features encoded so far are saved to the cache as a part file after
        at least ``chunk_items`` items or ``chunk_seconds`` seconds (at a batch boundary), and
        when the encoding is interrupted or fails; the next call resumes after them.

    Returns
    -------
    FeatureSet with ``features`` (n, encoder.dim) and ``mask`` (n,). A cache hit never runs the
    encoder.

    Raises
    ------
    ValueError
        The table has no item with this modality.
    fewmm.errors.DataError
        A payload cannot be read (names the item).
    """
    modality = modality or encoder.modality
    if modality != encoder.modality:
        raise ValueError(f"encoder {encoder.name!r} embeds {encoder.modality!r}, not {modality!r}")
    mask = table.mask(modality)
    if not mask.any():
        raise ValueError(f"data set {table.name!r} has no item with modality {modality!r} (has: {sorted(table.modalities)})")
    if cache is False:
        store = None
    elif isinstance(cache, FeatureCache):
        store = cache
    else:
        store = FeatureCache(None if cache in (None, True) else cache)
    key = cache_key(encoder, table, modality)
    if store is not None:
        hit = store.load(key)
        if hit is not None:
            log.info("feature cache hit: %s", hit.path)
            return hit
    idx = np.flatnonzero(mask)
    payloads = table.modalities[modality]
    todo = [payloads[i] for i in idx]
    parts = _Parts(store, key) if store is not None else None
    n_done, done = parts.load(encoder.dim) if parts is not None else (0, None)
    if n_done > len(todo):  # cannot happen with a matching key; be safe
        parts.clear()
        n_done, done = 0, None
    if n_done:
        log.info("resuming %s on %s after %d cached items", encoder.name, table.name, n_done)
    pending: list[torch.Tensor] = []
    state = {"start": n_done, "t": time.monotonic()}

    def save_pending() -> None:
        if pending:
            chunk = torch.cat(pending)
            parts.save(state["start"], chunk)
            state["start"] += len(chunk)
            pending.clear()
        state["t"] = time.monotonic()

    def on_batch(start: int, emb: torch.Tensor) -> None:
        pending.append(emb.clone())
        if sum(len(p) for p in pending) >= chunk_items or time.monotonic() - state["t"] >= chunk_seconds:
            save_pending()

    try:
        rest = encoder.embed(todo[n_done:], batch_size=batch_size, progress=progress, desc=f"{encoder.name} {table.name}",
                             on_batch=on_batch if parts is not None else None, progress_initial=n_done)
    except BaseException as exc:
        if parts is not None:
            try:
                save_pending()  # keep what was encoded before the interruption or failure
            except Exception as e:  # never hide the original error
                log.warning("could not save the encoded part: %s", e)
            if state["start"] > 0:  # read back by saved_parts(exc), e.g. for the CLIs' message
                exc.fewmm_saved_parts = {"items": int(state["start"]), "parts": str(parts.dir), "table": table.name,
                                         "encoder": encoder.name}
        raise
    emb = rest if done is None else torch.cat([done, rest])
    feats = torch.zeros((len(table), encoder.dim), dtype=torch.float32)
    feats[torch.as_tensor(idx)] = emb
    path = store.save(key, feats, mask) if store is not None else None
    if parts is not None:
        parts.clear()
    return FeatureSet(feats, mask, key, cache_hit=False, path=path, resumed_items=n_done)


# --- part files of an unfinished entry, for sharded extraction (fewmm.distributed) ---------------

def list_parts(store: FeatureCache, key: dict) -> list[tuple[int, int, Path]]:
    """Part files of the unfinished entry ``key``: ``(start, end, path)`` sorted, one per file
    ``<entry>.parts/<start>-<end>.safetensors`` (holding the features of items ``start:end`` of the
    items to encode, in table order); unverified (see :func:`read_part`)."""
    folder = _Parts(store, key).dir
    out = []
    if folder.is_dir():
        for f in folder.glob("*.safetensors"):
            try:
                a, b = (int(x) for x in f.stem.split("-"))
            except ValueError:
                continue
            if 0 <= a < b:
                out.append((a, b, f))
    return sorted(out)


def read_part(store: FeatureCache, key: dict, path: Path, dim: int) -> torch.Tensor:
    """The features of one part file, verified (key, checksum, shape (end - start, dim)).

    Returns
    -------
    torch.Tensor of shape (end - start, dim), float32

    Raises
    ------
    ValueError
        The file is unreadable, corrupted, of another key or of the wrong shape (the message
        names the file and the problem).
    """
    path = Path(path)
    got = _read_verified(path, key, "entry")
    if isinstance(got, str):
        raise ValueError(f"feature cache part {path}: {got}")
    a, b = (int(x) for x in path.stem.split("-"))
    if tuple(got[0].shape) != (b - a, dim):
        raise ValueError(f"feature cache part {path}: its shape {tuple(got[0].shape)} is not ({b - a}, {dim})")
    return got[0].float()


def save_part(store: FeatureCache, key: dict, start: int, features: torch.Tensor) -> None:
    """Write the features (n, dim) of items ``start:start + n`` of the items to encode as a part
    file of the unfinished entry ``key`` (atomically: temporary file + rename)."""
    _Parts(store, key).save(start, features)


def clear_parts(store: FeatureCache, key: dict) -> None:
    """Delete every part file of the entry ``key`` (once the entry is written)."""
    _Parts(store, key).clear()


if __name__ == "__main__":  # python -m fewmm.cache / torchrun ... -m fewmm.cache: see fewmm.distributed
    import sys

    from fewmm.distributed import main

    sys.exit(main())
