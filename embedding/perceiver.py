"""Visual Perceiver (SAIL §3.2): a fixed number of learnable latent queries cross-attend the patch tokens of all
frames of an item and are the only visual tokens the fusion transformer sees.

    patches [B, F, P, Di] --proj + frame emb + patch-position emb--> [B, F*P, H]
    latents [Nq, H] --cross-attention (x perceiver_layers)--> [B, Nq, H]
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention of queries over keys/values, then an MLP; both residual."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_q = nn.LayerNorm(hidden)
        self.ln_kv = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.ln_mlp = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden),
                                 nn.Dropout(dropout))

    def forward(self, q: Tensor, kv: Tensor, kv_padding: Tensor) -> Tensor:
        kv = self.ln_kv(kv)
        q = q + self.attn(self.ln_q(q), kv, kv, key_padding_mask=kv_padding, need_weights=False)[0]
        return q + self.mlp(self.ln_mlp(q))


class VisualPerceiver(nn.Module):
    """Patch tokens of up to `max_frames` frames -> `n_latents` visual tokens per item.

    Args:
        input_dim: Di, the patch feature size of the image encoder.
        hidden: H, the fusion width.
        n_latents: Nq learnable queries (SAIL: 16).
        max_frames, max_patches: sizes of the learned frame and patch-position embedding tables.
    """

    def __init__(self, input_dim: int, hidden: int, heads: int, n_latents: int, layers: int,
                 max_frames: int, max_patches: int, dropout: float) -> None:
        super().__init__()
        self.max_frames, self.max_patches = max_frames, max_patches
        self.proj = nn.Sequential(nn.LayerNorm(input_dim, elementwise_affine=False), nn.Linear(input_dim, hidden))
        self.frame_emb = nn.Embedding(max_frames, hidden)
        self.patch_emb = nn.Embedding(max_patches, hidden)
        self.latents = nn.Parameter(torch.randn(n_latents, hidden) * 0.02)
        self.blocks = nn.ModuleList(CrossAttentionBlock(hidden, heads, dropout) for _ in range(layers))
        self.ln_out = nn.LayerNorm(hidden)

    def forward(self, patches: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        """patches [B, F, P, Di], frame_mask [B, F] bool -> (tokens [B, Nq, H], item_has_visual [B] bool)."""
        B, F, P, _ = patches.shape
        if F > self.max_frames or P > self.max_patches:
            raise ValueError(f"image input has {F} frames x {P} patches; the model was configured for at most "
                             f"max_frames={self.max_frames} x max_patches={self.max_patches}")
        x = patches.new_zeros(B, F, P, self.frame_emb.embedding_dim)
        x[frame_mask] = self.proj(patches[frame_mask]).to(x.dtype)  # project present frames only: (B, F, P, H)
        x = x + self.frame_emb.weight[:F][None, :, None, :] + self.patch_emb.weight[:P][None, None, :, :]
        x = x.reshape(B, F * P, -1)  # (B, F*P, H)
        has_visual = frame_mask.any(dim=1)  # (B,)
        padding = ~frame_mask[:, :, None].expand(B, F, P).reshape(B, F * P)  # True = ignore
        # rows without any frame would attend to nothing (NaN softmax): let them attend everywhere; their
        # tokens are masked out of the fusion and zeroed below
        padding = padding & has_visual[:, None]
        q = self.latents[None].expand(B, -1, -1)  # (B, Nq, H)
        for block in self.blocks:
            q = block(q, x, padding)
        q = self.ln_out(q) * has_visual[:, None, None].to(q.dtype)
        return q, has_visual
