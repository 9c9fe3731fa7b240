"""An embedding cache keyed by the model and the image contents.

A re-run of an evaluation encodes nothing it has encoded before, and an
interrupted run (Ctrl-C, a crash, a kill) resumes from its last finished chunk.

Layout under the cache folder (default ``$XDG_CACHE_HOME/perception_retrieval``
or ``~/.cache/perception_retrieval``):

    models.json                 model file (path, size, mtime) -> sha256, so a 1 GB
                                model is hashed once, not on every run
    <model key>/files.json      image file (path, size, mtime) -> content hash
    <model key>/chunk-*.npz     keys (content hash + crop) and float32 embeddings

The model key is the model file's sha256 plus the settings that change the
numbers (dtype, L2 normalisation). An image's key is a BLAKE2b hash of its
bytes plus its crop box, so a renamed or copied file is still a hit and an
edited file is a miss. Chunks are written to a temporary file and renamed, so a
chunk is either whole or absent: a kill loses at most the chunk being encoded.

Not safe for two processes writing the same model key at once beyond this:
each writes its own chunks (unique names), so both succeed and later runs see
the union; no chunk is ever corrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .datasets import ImageRef

_HASH_BLOCK = 1 << 20


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "perception_retrieval")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_hash(path: str) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: str) -> str:
    status = os.stat(path)
    return f"{status.st_size}:{status.st_mtime_ns}"


def _write_json_atomic(path: str, value) -> None:
    folder = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(value, out)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            value = json.load(handle)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}  # a missing or damaged memo only costs re-hashing


class _StatMemo:
    """path -> hash, trusted while the file's size and mtime are unchanged."""

    def __init__(self, path: str):
        self.path = path
        self.entries = _read_json(path)
        self.dirty = False

    def get(self, file_path: str, compute: Callable[[str], str]) -> str:
        stat = _stat_key(file_path)
        entry = self.entries.get(file_path)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == stat:
            return entry[1]
        value = compute(file_path)
        self.entries[file_path] = [stat, value]
        self.dirty = True
        return value

    def save(self) -> None:
        if self.dirty:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            _write_json_atomic(self.path, self.entries)
            self.dirty = False


def model_digest(model_path: str, cache_dir: Optional[str] = None) -> str:
    """The model file's sha256, memoised by (path, size, mtime) in cache_dir."""
    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    memo = _StatMemo(os.path.join(cache_dir, "models.json"))
    digest = memo.get(os.path.abspath(model_path), file_sha256)
    memo.save()
    return digest


# Folder names keep the short dtype spellings they were created with, so caches
# made before the dtype names became numpy's stay valid.
_DTYPE_TOKENS = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def model_key(model_sha256: str, dtype: str = "float32", normalize: bool = True) -> str:
    """The cache folder name for a model and the settings that change its output."""
    return f"{model_sha256[:20]}-{_DTYPE_TOKENS.get(dtype, dtype)}" + ("" if normalize else "-raw")


def image_key(content_hash: str, crop: Optional[Tuple[int, int, int, int]]) -> str:
    return content_hash if crop is None else f"{content_hash}@{crop[0]},{crop[1]},{crop[2]},{crop[3]}"


class EmbeddingCache:
    """Embeddings of one model (one model key), looked up by image content."""

    def __init__(self, cache_dir: str, key: str):
        self.folder = os.path.join(cache_dir, key)
        os.makedirs(self.folder, exist_ok=True)
        self._files = _StatMemo(os.path.join(self.folder, "files.json"))
        self._rows: Dict[str, Tuple[int, int]] = {}   # image key -> (chunk number, row)
        self._chunks: List[np.ndarray] = []
        self._load_chunks()

    def _load_chunks(self) -> None:
        for name in sorted(os.listdir(self.folder)):
            if not (name.startswith("chunk-") and name.endswith(".npz")):
                continue
            try:
                with np.load(os.path.join(self.folder, name), allow_pickle=False) as chunk:
                    keys, embeddings = chunk["keys"], chunk["embeddings"]
            except (OSError, ValueError, KeyError):
                continue  # a damaged chunk is ignored: its images are encoded again
            if embeddings.ndim != 2 or len(keys) != len(embeddings) or embeddings.dtype != np.float32:
                continue
            number = len(self._chunks)
            self._chunks.append(embeddings)
            for row, image in enumerate(keys.tolist()):
                self._rows[image] = (number, row)

    def __len__(self) -> int:
        return len(self._rows)

    def keys_for(self, images: Sequence[ImageRef]) -> List[str]:
        """The content key of each image (hashing files not seen before)."""
        try:
            return [image_key(self._files.get(image.path, _content_hash), image.crop) for image in images]
        finally:
            self._files.save()

    def lookup(self, keys: Sequence[str], dim: int) -> Tuple[np.ndarray, np.ndarray]:
        """(embeddings N x dim with cached rows filled, found mask)."""
        embeddings = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        for i, key in enumerate(keys):
            where = self._rows.get(key)
            if where is not None and self._chunks[where[0]].shape[1] == dim:
                embeddings[i] = self._chunks[where[0]][where[1]]
                found[i] = True
        return embeddings, found

    def store(self, keys: Sequence[str], embeddings: np.ndarray) -> None:
        """Writes one finished chunk (atomically) and indexes it."""
        if len(keys) == 0:
            return
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}.npz"
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, keys=np.asarray(list(keys), dtype=str), embeddings=embeddings)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, os.path.join(self.folder, name))
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        number = len(self._chunks)
        self._chunks.append(embeddings)
        for row, key in enumerate(keys):
            self._rows[key] = (number, row)


def chunks(count: int, size: int) -> Iterable[Tuple[int, int]]:
    for begin in range(0, count, size):
        yield begin, min(begin + size, count)
