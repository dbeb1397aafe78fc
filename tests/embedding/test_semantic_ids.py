"""Residual k-means semantic IDs: shapes, determinism, residual levels, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from embedding.semantic_ids import ResidualKMeans


def test_residual_kmeans_shapes_determinism_and_save(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 16)).astype(np.float32)
    a = ResidualKMeans(levels=3, codebook_size=8, seed=1).fit(emb)
    codes = a.encode(emb)
    assert codes.shape == (300, 3) and codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < 8
    np.testing.assert_array_equal(codes, ResidualKMeans(levels=3, codebook_size=8, seed=1).fit(emb).encode(emb))
    # residual levels reduce the reconstruction error
    err1 = np.linalg.norm(emb - a.codebooks[0][codes[:, 0]], axis=1).mean()
    err3 = np.linalg.norm(emb - a.decode(codes), axis=1).mean()
    assert err3 < err1
    a.save(tmp_path / "sid.npz")
    b = ResidualKMeans.load(tmp_path / "sid.npz")
    np.testing.assert_array_equal(b.encode(emb), codes)
    assert b.levels == 3 and b.codebook_size == 8
    assert ResidualKMeans(levels=2, codebook_size=64).fit(emb[:10]).encode(emb[:10]).max() < 10
    assert 0 <= a.stats(emb)["sid/collision_rate"] < 1
    with pytest.raises(RuntimeError, match="not fitted"):
        ResidualKMeans().encode(emb)
