"""The sharded feature cache: ragged records round-trip, later shards win, damaged shards are ignored."""

from __future__ import annotations

import json

import numpy as np

from embedding.encoders.cache import FeatureCache, ShardWriter, record_key


def test_cache_round_trip_and_atomic_shards(tmp_path):
    cache = FeatureCache(tmp_path, "text", {"model": "tiny", "dim": 3})
    assert json.loads((cache.dir / "identity.json").read_text()) == {"dim": 3, "model": "tiny"}
    keys = [record_key(i, f"h{i}") for i in range(5)]
    writer = ShardWriter(cache, shard_size=2)
    for i, k in enumerate(keys):
        writer.add(k, {"tokens": np.full((i + 1, 3), i, np.float16), "field": np.arange(i + 1, dtype=np.int8)})
    writer.flush()
    assert writer.shards_written == 3 and cache.missing(keys + ["other"]) == [5]
    assert not [p for p in cache.dir.iterdir() if p.name.startswith(".")]  # no temp file left behind
    again = FeatureCache(tmp_path, "text", {"dim": 3, "model": "tiny"})  # same identity: same folder, read back
    for i, k in enumerate(keys):
        rec = again.get(k)
        assert rec["tokens"].shape == (i + 1, 3) and (rec["tokens"] == i).all() and rec["field"].tolist() == list(
            range(i + 1))
    again.write([keys[0]], [{"tokens": np.full((1, 3), 9, np.float16), "field": np.zeros(1, np.int8)}])
    assert FeatureCache(tmp_path, "text", {"model": "tiny", "dim": 3}).get(keys[0])["tokens"][0, 0] == 9  # later wins
    # a damaged shard is ignored (its records are encoded again), the others still load
    shards = sorted(cache.dir.glob("shard-*.npz"))
    held = []
    for shard in shards:
        with np.load(shard) as z:
            held.append(set(z["__keys__"].tolist()))
    lost = held[0] - set().union(*held[1:])
    shards[0].write_bytes(b"not a zip file")
    fresh = FeatureCache(tmp_path, "text", {"model": "tiny", "dim": 3})
    assert fresh.missing(keys) == [i for i, k in enumerate(keys) if k in lost]
    assert FeatureCache(tmp_path, "text", {"model": "other", "dim": 3}).dir != cache.dir
