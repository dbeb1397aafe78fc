"""Sharded on-disk feature cache, keyed by (item id, content hash of the input, encoder identity).

Layout::

    <cache_dir>/<modality>/<identity hash>/identity.json      what produced these features
    <cache_dir>/<modality>/<identity hash>/shard-<uuid>.npz   records written so far

A record is a dict of arrays whose first dimension may vary between records (ragged); a shard stores each array
name concatenated plus offsets. Shards and identity.json are written atomically (recsys.io), so a crash never leaves a
half-written shard and an interrupted run resumes from the shards it finished. Later shards win on duplicate keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np

from recsys.io import atomic_file, write_text

log = logging.getLogger(__name__)


def sha1(*parts: bytes | str) -> str:
    h = hashlib.sha1()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def identity_hash(identity: dict) -> str:
    return sha1(json.dumps(identity, sort_keys=True, default=str))[:16]


def record_key(item_id: int | None, content_hash: str) -> str:
    """Cache key of one input: the item id (or none, for free texts) and the hash of its content."""
    return sha1("" if item_id is None else str(int(item_id)), content_hash)


class FeatureCache:
    """Records of one modality and one encoder identity."""

    def __init__(self, cache_dir: Path | str, modality: str, identity: dict):
        self.identity = identity
        self.dir = Path(cache_dir) / modality / identity_hash(identity)
        self.dir.mkdir(parents=True, exist_ok=True)
        ident = self.dir / "identity.json"
        if not ident.is_file():
            write_text(ident, json.dumps(identity, indent=2, sort_keys=True, default=str))
        self._index: dict[str, tuple[int, int]] | None = None
        self._shards: list[dict[str, np.ndarray]] = []

    # ----------------------------------------------------------------------------------------------- reading
    def _load(self) -> None:
        if self._index is not None:
            return
        self._index = {}
        paths = sorted(self.dir.glob("shard-*.npz"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        for path in paths:
            try:
                with np.load(path, allow_pickle=False) as z:
                    shard = {k: z[k] for k in z.files}
            except Exception as e:  # a damaged shard is ignored: its records are re-encoded
                log.warning("ignoring unreadable cache shard %s: %s", path, e)
                continue
            self._add_shard(shard)

    def _add_shard(self, shard: dict[str, np.ndarray]) -> None:
        n = len(self._shards)
        self._shards.append(shard)
        for row, key in enumerate(shard["__keys__"]):
            self._index[str(key)] = (n, row)

    def __contains__(self, key: str) -> bool:
        self._load()
        return key in self._index

    def __len__(self) -> int:
        self._load()
        return len(self._index)

    def get(self, key: str) -> dict[str, np.ndarray]:
        self._load()
        n, row = self._index[key]
        shard = self._shards[n]
        out = {}
        for name in shard:
            if name.startswith("__") or name.endswith("__off"):
                continue
            off = shard[f"{name}__off"]
            out[name] = shard[name][off[row]:off[row + 1]]
        return out

    def missing(self, keys: list[str]) -> list[int]:
        """Positions of keys that have no record yet."""
        self._load()
        return [i for i, k in enumerate(keys) if k not in self._index]

    # ----------------------------------------------------------------------------------------------- writing
    def write(self, keys: list[str], records: list[dict[str, np.ndarray]]) -> Path | None:
        """Atomically write one shard holding these records (same array names in every record)."""
        if not keys:
            return None
        assert len(keys) == len(records)
        arrays: dict[str, np.ndarray] = {"__keys__": np.array(keys)}
        for name in records[0]:
            parts = [np.asarray(r[name]) for r in records]
            lengths = np.array([len(p) for p in parts], dtype=np.int64)
            arrays[f"{name}__off"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            arrays[name] = np.concatenate(parts, axis=0)
        final = self.dir / f"shard-{uuid.uuid4().hex}.npz"
        with atomic_file(final) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes the shard visible
        self._load()
        self._add_shard(arrays)
        return final


class ShardWriter:
    """Buffers records and writes a shard every `shard_size` records (and on flush)."""

    def __init__(self, cache: FeatureCache, shard_size: int):
        self.cache, self.shard_size = cache, shard_size
        self.keys: list[str] = []
        self.records: list[dict[str, np.ndarray]] = []
        self.shards_written = 0

    def add(self, key: str, record: dict[str, np.ndarray]) -> None:
        self.keys.append(key)
        self.records.append(record)
        if len(self.keys) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if self.keys:
            self.cache.write(self.keys, self.records)
            self.shards_written += 1
            self.keys, self.records = [], []
