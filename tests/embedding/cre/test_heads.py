"""The teacher projection heads: unit outputs, one file that round-trips, `project` over many rows."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from embedding.cre.heads import ProjectionHead, load_heads, project, save_heads


def test_heads_round_trip_and_project(tmp_path):
    torch.manual_seed(0)
    heads = nn.ModuleDict({"id": ProjectionHead(8, 0, 4), "sequence": ProjectionHead(8, 16, 6)})
    path = save_heads(heads, tmp_path / "heads.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["heads.safetensors"]  # written atomically: no leftovers
    loaded = load_heads(path)
    assert [type(m) for m in loaded["id"].net] == [nn.Linear] and len(loaded["sequence"].net) == 3
    assert not loaded.training
    x = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    out = project(loaded, x, batch_size=3)  # several batches
    assert {k: v.shape for k, v in out.items()} == {"id": (10, 4), "sequence": (10, 6)}
    with torch.no_grad():
        for name, head in heads.items():
            np.testing.assert_allclose(out[name], head(torch.as_tensor(x)).numpy(), atol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(out[name], axis=1), 1.0, atol=1e-5)
    assert project(loaded, np.zeros((0, 8), np.float32))["id"].shape == (0, 4)
