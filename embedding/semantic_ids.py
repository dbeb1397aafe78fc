"""Semantic IDs by residual k-means (SAIL §4.4.6: clustering / vector quantisation of the embedding).

Level 0 clusters the embeddings; each next level clusters the residuals (embedding minus the centroids chosen so
far). An item's semantic ID is its tuple of centroid indices [sid_0, ..., sid_{L-1}]; coarse-to-fine prefixes
act like hierarchical, trainable ID features downstream.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recsys.io import atomic_file


class SemanticIdConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    levels: int = Field(3, gt=0, description="number of residual quantisation levels (sid_0..sid_{L-1})")
    codebook_size: int = Field(64, gt=1, description="centroids per level (capped at the number of items)")
    niter: int = Field(25, gt=0, description="k-means iterations per level")
    seed: int = 0


class ResidualKMeans:
    """Residual k-means quantiser (faiss, exact assignment, deterministic under `seed`).

    >>> rq = ResidualKMeans(levels=3, codebook_size=64, seed=0).fit(emb)   # emb [N, D]
    >>> codes = rq.encode(emb)                                             # [N, 3] int64
    """

    def __init__(self, levels: int = 3, codebook_size: int = 64, seed: int = 0, niter: int = 25) -> None:
        if levels < 1 or codebook_size < 2:
            raise ValueError(f"levels={levels} must be >= 1 and codebook_size={codebook_size} >= 2")
        self.levels, self.codebook_size, self.seed, self.niter = levels, codebook_size, seed, niter
        self.codebooks: list[np.ndarray] = []  # per level [K_l, D] float32

    @classmethod
    def from_config(cls, cfg: SemanticIdConfig) -> ResidualKMeans:
        return cls(cfg.levels, cfg.codebook_size, cfg.seed, cfg.niter)

    @staticmethod
    def _check(emb: np.ndarray) -> np.ndarray:
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.ndim != 2 or len(emb) == 0:
            raise ValueError(f"embeddings must be a non-empty [N, D] array, got shape {emb.shape}")
        if not np.isfinite(emb).all():
            raise ValueError("embeddings contain NaN/inf")
        return emb

    def fit(self, emb: np.ndarray) -> ResidualKMeans:
        x = self._check(emb).copy()
        n, d = x.shape
        k = min(self.codebook_size, n)
        self.codebooks = []
        for level in range(self.levels):
            km = faiss.Kmeans(d, k, niter=self.niter, seed=self.seed + level, verbose=False,
                              min_points_per_centroid=1, max_points_per_centroid=max(256, n // k + 1))
            km.train(x)
            centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
            self.codebooks.append(centroids)
            x -= centroids[self._assign(x, centroids)]
        return self

    @staticmethod
    def _assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        index = faiss.IndexFlatL2(centroids.shape[1])
        index.add(centroids)
        return index.search(x, 1)[1][:, 0].astype(np.int64)

    def encode(self, emb: np.ndarray) -> np.ndarray:
        """Semantic IDs [N, levels] int64."""
        if not self.codebooks:
            raise RuntimeError("ResidualKMeans is not fitted; call fit(emb) or load(path) first")
        x = self._check(emb).copy()
        if x.shape[1] != self.codebooks[0].shape[1]:
            raise ValueError(f"embeddings have dim {x.shape[1]}, the codebooks {self.codebooks[0].shape[1]}")
        codes = np.zeros((len(x), len(self.codebooks)), dtype=np.int64)
        for level, centroids in enumerate(self.codebooks):
            codes[:, level] = self._assign(x, centroids)
            x -= centroids[codes[:, level]]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction: sum of the chosen centroids [N, D]."""
        return sum(cb[codes[:, lvl]] for lvl, cb in enumerate(self.codebooks))

    def stats(self, emb: np.ndarray) -> dict[str, float]:
        """Codebook usage per level, share of items sharing their full ID, relative reconstruction error."""
        codes = self.encode(emb)
        out = {f"sid/used_level{lvl}": float(len(np.unique(codes[:, lvl]))) for lvl in range(codes.shape[1])}
        out["sid/top_share_level0"] = float(np.unique(codes[:, 0], return_counts=True)[1].max() / len(codes))
        _, counts = np.unique(codes, axis=0, return_counts=True)
        out["sid/collision_rate"] = float(1 - len(counts) / len(codes))
        err = np.linalg.norm(emb - self.decode(codes), axis=1) / np.maximum(np.linalg.norm(emb, axis=1), 1e-9)
        out["sid/rel_reconstruction_error"] = float(err.mean())
        return out

    def save(self, path: str | Path) -> Path:
        """One .npz (codebooks + settings), written atomically."""
        path = Path(path)
        meta = {"levels": self.levels, "codebook_size": self.codebook_size, "seed": self.seed, "niter": self.niter}
        with atomic_file(path) as tmp:
            np.savez(tmp, meta=np.array(json.dumps(meta)),
                     **{f"level_{i}": cb for i, cb in enumerate(self.codebooks)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> ResidualKMeans:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            rq = cls(**meta)
            rq.codebooks = [z[f"level_{i}"] for i in range(sum(k.startswith("level_") for k in z.files))]
        return rq
