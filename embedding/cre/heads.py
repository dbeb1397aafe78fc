"""The teacher projection heads: a CRE artefact that training writes and the evaluators (and users) read.

One head per teacher maps the student's L2-normalised item embedding onto that teacher's item-ID space. The heads
are saved beside the CRE model (heads.safetensors), outside its state, so the model directory stays a plain
`OmniEmbeddingModel` that `from_pretrained` loads unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recsys.io import atomic_file

HEADS_NAME = "heads.safetensors"


class ProjectionHead(nn.Module):
    """Student item embedding [B, D] -> teacher space [B, Dt] (L2-normalised): Linear-GELU-Linear, or one Linear
    when hidden = 0. A linear head makes the student embedding itself carry the teacher's geometry; an MLP head
    can memorise the teacher from small differences between student vectors and leave the embedding as it was."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.dims = (in_dim, hidden, out_dim)
        self.net = (nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim)) if hidden
                    else nn.Sequential(nn.Linear(in_dim, out_dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


def save_heads(heads: nn.ModuleDict, path: str | Path) -> Path:
    """One safetensors file, written atomically: '<teacher>.<param>' tensors, each head's dims in the metadata."""
    path = Path(path)
    state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, h in heads.items()
             for k, v in h.state_dict().items()}
    meta = {"heads": json.dumps({name: list(h.dims) for name, h in heads.items()})}
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def load_heads(path: str | Path, device: str | torch.device = "cpu") -> nn.ModuleDict:
    path = Path(path)
    with safe_open(str(path), "pt") as f:
        dims = json.loads(f.metadata()["heads"])
    state = load_file(str(path))
    heads = nn.ModuleDict({name: ProjectionHead(*d) for name, d in dims.items()})
    for name, h in heads.items():
        h.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")})
    return heads.to(device).eval()


@torch.no_grad()
def project(heads: nn.ModuleDict, vectors: np.ndarray, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Student vectors [N, D] -> {teacher: [N, Dt]} through each head (on the heads' device)."""
    out = {}
    for name, h in heads.items():
        dev = next(h.parameters()).device
        parts = [h(torch.as_tensor(vectors[s:s + batch_size], dtype=torch.float32, device=dev)).cpu().numpy()
                 for s in range(0, len(vectors), batch_size)]
        out[name] = np.concatenate(parts) if parts else np.zeros((0, h.dims[2]), np.float32)
    return out


__all__ = ["HEADS_NAME", "ProjectionHead", "save_heads", "load_heads", "project"]
