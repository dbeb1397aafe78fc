"""The omni-modal item embedding model (SAIL-Embedding §3.2, small and trained from scratch here).

Token sequence of one item (absent modalities contribute no tokens; padding masks hide them):

    [task token] [audio token] [Nq visual tokens] [text tokens ...] [one token per precomputed vector]
         |            |               |                  |                      |
     (task, role)  chunks -> enc   Perceiver over      projected +          linear per
     embedding     -> mean -> proj  all frames' patches field embedding     vector name

-> bidirectional TransformerEncoder -> mean_pool(tanh(h)) over valid tokens -> Linear(H, D) -> (+ residual)
   (+ item memory) -> L2 norm.

Initialisation (our choice, where SAIL starts from a pretrained LLM and we train a small fusion model from
scratch in ~300 CPU steps): the output adds a residual path `S_t @ unit(mean of the raw text tokens)` (S_t:
text_dim -> embed_dim, orthogonal init, so cosines of the text baseline are kept: exactly when embed_dim >=
text_dim, approximately (JL) otherwise), and the fusion projection `head` starts at 0. The untrained model thus
ranks like the text-only baseline (mean-pooled MiniLM tokens) in every role and task, and training only adds
what the fusion transformer learns (images, audio, task/role instructions, collaborative signal). Items without
text get `S_v @ unit(mean patch feature)` instead (image_residual), so they are not a zero vector at init, and
`S_p @ unit(standardised vector)` per precomputed vector (precomputed_residual; standardised per dimension with the
catalogue's mean and spread, `fit_precomputed_scaling`, kept as buffers in the weights). Without it an item that
carries only precomputed vectors had an exactly zero embedding (zero head, no residual) and training stayed at
chance.
Without this the fusion model ended 300 steps well below the text baseline (MovieLens q2i R@10 0.10 vs 0.74).
Item memory (`memory_hidden` > 0; added by CRE, see InputMemory): a wide MLP over the pooled raw inputs whose
output is added before the normalisation. The 2-layer, 128-wide fusion transformer did not take up
item-specific collaborative signal in CPU budgets (600 distillation steps moved the teacher cosine from 0 to 0.4
and behaviour recall barely); the wide MLP learns it quickly, from content alone, so cold items still get a vector.
The first 64 / 128 / ... dimensions are trained as Matryoshka prefixes (see embedding.losses.MatryoshkaLoss);
`EmbeddingOutput.truncate(d)` gives a normalised prefix.

The config lives in embedding.model_config; batches (dicts of tensors) are built by embedding.batches.collate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from embedding.encoders.audio import ConvAudioEncoder
from embedding.encoders.types import TEXT_FIELDS
from embedding.model_config import OmniEmbeddingConfig
from embedding.perceiver import VisualPerceiver
from recsys.errors import DataError
from recsys.io import atomic_file, write_json

ROLES: tuple[str, ...] = ("query", "target")
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class EmbeddingOutput:
    """embedding: [B, D] L2-normalised. raw: [B, D] before normalisation. pooled: [B, H] mean of tanh(h).
    token_mask: [B, T] True where a token was present (after field dropout)."""

    embedding: Tensor
    raw: Tensor | None = None
    pooled: Tensor | None = None
    token_mask: Tensor | None = None

    def truncate(self, dim: int) -> Tensor:
        """The L2-normalised Matryoshka prefix of size `dim`."""
        return F.normalize(self.embedding[:, :dim], dim=-1)


class AudioTokenizer(nn.Module):
    """Audio chunks -> exactly one token per item (SAIL: chunks encoded, mean-pooled, projected).

    logmel: chunks [B, K, n_mels, T] -> ConvAudioEncoder (trained here) -> [B, K, H];
    embedding: chunks [B, K, Da] (frozen encoder output). Masked mean over chunks -> Linear -> [B, H].
    """

    def __init__(self, kind: str, dim: int, hidden: int, channels: list[int] = (16, 32, 64, 128),
                 train_chunks: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.kind, self.train_chunks = kind, train_chunks
        if kind == "logmel":  # trainable: the fusion model fine-tunes the log-mel encoder
            self.encoder = ConvAudioEncoder(dim, hidden, channels=tuple(channels), dropout=dropout)
            self.proj = nn.Linear(hidden, hidden)
        else:
            self.encoder = None
            self.proj = nn.Sequential(nn.LayerNorm(dim, elementwise_affine=False), nn.Linear(dim, hidden))

    def forward(self, audio: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """-> (token [B, 1, H], item_has_audio [B])."""
        B, K = mask.shape
        if self.training and self.train_chunks is not None and K > self.train_chunks:
            # keep a random subset of at most train_chunks present chunks per item
            score = torch.rand(B, K, device=mask.device).masked_fill(~mask, -1.0)
            keep = torch.zeros_like(mask).scatter_(1, score.topk(self.train_chunks, dim=1).indices, True)
            mask = mask & keep
        if self.encoder is not None:
            if audio.dim() != 4:
                raise ValueError(f"logmel audio must be [B, K, n_mels, T], got shape {tuple(audio.shape)}")
            feats = audio.new_zeros(B, K, self.proj.in_features)
            if mask.any():
                feats[mask] = self.encoder(audio[mask]).to(feats.dtype)  # only present chunks: (M, H)
        else:
            if audio.dim() != 3:
                raise ValueError(f"embedding audio must be [B, K, Da], got shape {tuple(audio.shape)}")
            feats = audio
        w = mask.to(feats.dtype)[..., None]  # (B, K, 1)
        pooled = (feats * w).sum(1) / w.sum(1).clamp(min=1.0)  # (B, Da|H)
        has = mask.any(1)
        return (self.proj(pooled) * has[:, None].to(pooled.dtype))[:, None, :], has


class PrecomputedScaling(nn.Module):
    """(v - mean) / spread per dimension, with the catalogue's statistics as buffers (identity until `fit`).
    Missing vectors (NaN rows) come out as zeros; dimensions that do not vary come out as zeros too."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    def fit(self, vectors: np.ndarray) -> None:
        v = np.asarray(vectors, dtype=np.float64)
        v = v[~np.isnan(v).any(1)]
        if len(v) < 2:  # no spread to measure: leave the vectors as they are
            return
        std = v.std(0)
        tol = 1e-6 * max(float(std.max()), 1e-30)
        inv = np.where(std > tol, 1.0 / np.maximum(std, tol), 0.0)
        self.mean.copy_(torch.as_tensor(v.mean(0), dtype=self.mean.dtype))
        self.inv_std.copy_(torch.as_tensor(inv, dtype=self.inv_std.dtype))

    def forward(self, v: Tensor) -> Tensor:
        return torch.nan_to_num((v - self.mean) * self.inv_std)


class InputMemory(nn.Module):
    """Pooled raw inputs -> Linear-GELU-Linear -> [B, D], added to the embedding before normalisation.

    Inputs (each LayerNorm-ed on its own, zeros when absent): the mean raw token of every text field (after field
    dropout), the mean image patch feature, the mean audio chunk (log-mel bands averaged over time, or the
    precomputed chunk embedding) and every precomputed vector. The output layer starts at 0, so adding a memory
    to a trained model changes nothing until it is trained (CRE). Why: the small fusion transformer memorises
    item-specific signal slowly; a wide MLP on item-distinct inputs does it fast, and still from content only."""

    def __init__(self, config: OmniEmbeddingConfig) -> None:
        super().__init__()
        c = config
        self.parts = [("text", c.text_dim * len(TEXT_FIELDS))]
        if c.image_dim:
            self.parts.append(("image", c.image_dim))
        if c.audio_kind:
            self.parts.append(("audio", c.audio_dim))
        self.parts += [(f"pre_{name}", d) for name, d in sorted(c.precomputed.items())]
        self.net = nn.Sequential(nn.Linear(sum(d for _, d in self.parts), c.memory_hidden), nn.GELU(),
                                 nn.Linear(c.memory_hidden, c.embed_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    @staticmethod
    def _masked_mean(x: Tensor, mask: Tensor, dims: tuple[int, ...]) -> Tensor:
        w = mask.to(x.dtype)
        while w.dim() < x.dim():
            w = w[..., None]
        w = w.expand_as(x)
        return (x * w).sum(dims) / w.sum(dims).clamp(min=1.0)

    def features(self, batch: dict[str, Tensor], tmask: Tensor) -> Tensor:
        text, field = batch["text_tokens"], batch["text_field"]
        B = text.shape[0]
        onehot = (F.one_hot(field.clamp(min=0), len(TEXT_FIELDS)) & tmask[..., None]).to(text.dtype)  # (B, Lt, n)
        per_field = torch.einsum("bln,bld->bnd", onehot, text) / onehot.sum(1).clamp(min=1.0)[..., None]
        feats = [F.layer_norm(per_field, per_field.shape[-1:]).reshape(B, -1)]  # (B, n * Dt)
        for name, dim in self.parts[1:]:
            if name == "image":
                v = (self._masked_mean(batch["image"], batch["image_mask"], (1, 2)) if "image" in batch
                     else text.new_zeros(B, dim))
            elif name == "audio":
                if "audio" in batch:
                    a = batch["audio"].mean(-1) if batch["audio"].dim() == 4 else batch["audio"]  # (B, K, dim)
                    v = self._masked_mean(a, batch["audio_mask"], (1,))
                else:
                    v = text.new_zeros(B, dim)
            else:
                v = torch.nan_to_num(batch[name]) if name in batch else text.new_zeros(B, dim)
            feats.append(F.layer_norm(v, (dim,)))
        return torch.cat(feats, 1)

    def forward(self, batch: dict[str, Tensor], tmask: Tensor) -> Tensor:
        return self.net(self.features(batch, tmask))


class OmniEmbeddingModel(nn.Module):
    """Modality tokens -> bidirectional fusion transformer -> mean_pool(tanh(h)) -> projection -> L2 norm."""

    TYPE_TASK, TYPE_AUDIO, TYPE_VISUAL, TYPE_TEXT, TYPE_PRECOMPUTED = range(5)

    def __init__(self, config: OmniEmbeddingConfig) -> None:
        super().__init__()
        self.config = c = config
        H = c.hidden
        self.task_emb = nn.Embedding(len(c.tasks) * len(ROLES), H)  # one instruction per (task, role)
        self.type_emb = nn.Embedding(5, H)  # which modality a token comes from
        self.text_proj = nn.Sequential(nn.LayerNorm(c.text_dim, elementwise_affine=False), nn.Linear(c.text_dim, H))
        self.field_emb = nn.Embedding(len(TEXT_FIELDS), H)
        self.perceiver = (VisualPerceiver(c.image_dim, H, c.heads, c.n_latents, c.perceiver_layers, c.max_frames,
                                          c.max_patches, c.dropout) if c.image_dim else None)
        self.audio = (AudioTokenizer(c.audio_kind, c.audio_dim, H, c.audio_channels, c.audio_train_chunks, c.dropout)
                      if c.audio_kind else None)
        self.pre_proj = nn.ModuleDict({name: nn.Sequential(nn.LayerNorm(d, elementwise_affine=False), nn.Linear(d, H))
                                       for name, d in sorted(c.precomputed.items())})
        self.pre_scaling = nn.ModuleDict({name: PrecomputedScaling(d) for name, d in sorted(c.precomputed.items())})
        layer = nn.TransformerEncoderLayer(H, c.heads, c.ffn_mult * H, c.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, c.layers, norm=nn.LayerNorm(H), enable_nested_tensor=False)
        self.head = nn.Linear(H, c.embed_dim)
        self.apply(self._init_weights)
        nn.init.normal_(self.head.weight, std=c.head_init_std)
        # residual input paths (our initialisation choice, see the module docstring)
        self.text_skip = nn.Linear(c.text_dim, c.embed_dim, bias=False) if c.text_residual else None
        self.image_skip = (nn.Linear(c.image_dim, c.embed_dim, bias=False)
                           if c.image_residual and c.image_dim else None)
        self.pre_skip = (nn.ModuleDict({name: nn.Linear(d, c.embed_dim, bias=False)
                                        for name, d in sorted(c.precomputed.items())})
                         if c.precomputed_residual else nn.ModuleDict())
        for skip in (self.text_skip, self.image_skip, *self.pre_skip.values()):
            if skip is not None:
                nn.init.orthogonal_(skip.weight)  # orthonormal rows/columns: preserves cosines (JL)
        self.memory = InputMemory(c) if c.memory_hidden else None
        self.late_proj = nn.Linear(H, c.embed_dim) if c.late_fusion else None
        self.late_gate = nn.Linear(2 * H, c.embed_dim) if c.late_fusion else None
        if self.late_gate is not None:  # start near the fused output: g = sigmoid(4) = 0.98
            nn.init.zeros_(self.late_gate.weight)
            nn.init.constant_(self.late_gate.bias, 4.0)

    def with_memory(self, hidden: int) -> OmniEmbeddingModel:
        """This model plus an item memory of width `hidden` (zero output: same embeddings until trained).
        Returns self when it already has one of that width."""
        if self.config.memory_hidden == hidden:
            return self
        if self.config.memory_hidden:
            raise ValueError(f"the model already has an item memory of width {self.config.memory_hidden}, "
                             f"not {hidden}")
        device = next(self.parameters()).device
        model = type(self)(self.config.model_copy(update={"memory_hidden": hidden}))
        missing, unexpected = model.load_state_dict(self.state_dict(), strict=False)
        if unexpected or any(not k.startswith("memory.") for k in missing):
            raise RuntimeError(f"with_memory: unexpected state keys {unexpected} / missing {missing}")
        return model.to(device).train(self.training)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    # ---- tokens -------------------------------------------------------------------------------------------
    def task_id(self, task: str, role: str) -> int:
        if task not in self.config.tasks:
            raise ValueError(f"unknown task {task!r}; the model knows {self.config.tasks}")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        return self.config.tasks.index(task) * len(ROLES) + ROLES.index(role)

    def _drop_fields(self, field: Tensor, mask: Tensor, text_only: Tensor) -> Tensor:
        """Randomly drop whole text fields (training). Never drops every field of a text-only item."""
        n = len(TEXT_FIELDS)
        onehot = F.one_hot(field.clamp(min=0), n).bool() & mask[..., None]  # (B, Lt, n)
        present = onehot.any(1)  # (B, n)
        drop = (torch.rand(present.shape, device=field.device) < self.config.field_drop_prob) & present
        all_gone = present.any(1) & ~(present & ~drop).any(1) & text_only  # (B,)
        drop = drop & ~all_gone[:, None]
        return mask & ~drop.gather(1, field.clamp(min=0))

    def _drop_modalities(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Randomly remove items' image, audio and precomputed vectors (training), exactly as a missing modality
        looks (masks off, NaN vectors); an item that would lose every modality it has keeps them all."""
        p = self.config.modality_drop_prob
        present = {"image_mask": batch["image_mask"].any(1)} if "image" in batch else {}
        if "audio" in batch:
            present["audio_mask"] = batch["audio_mask"].any(1)
        present.update({k: ~torch.isnan(batch[k]).any(1) for k in sorted(batch) if k.startswith("pre_")})
        if not present:
            return batch
        drop = {k: (torch.rand(has.shape, device=has.device) < p) & has for k, has in present.items()}
        kept = (batch["text_field"] >= 0).any(1)
        for k, has in present.items():
            kept = kept | (has & ~drop[k])
        out = dict(batch)
        for k, d in drop.items():
            d = d & kept
            out[k] = batch[k] & ~d[:, None] if k.endswith("_mask") else batch[k].masked_fill(d[:, None], float("nan"))
        return out

    def tokens(self, batch: dict[str, Tensor], role: str, task: str) -> tuple[Tensor, Tensor]:
        """Build the token sequence -> (x [B, T, H], valid [B, T] bool)."""
        x, valid, _, _ = self._tokens(batch, role, task)
        return x, valid

    def _tokens(self, batch: dict[str, Tensor], role: str, task: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """-> (x, valid, text mask [B, Lt] after field dropout, late [B, T]: the valid audio, visual and
        precomputed tokens, what gated late fusion reads before the fusion transformer)."""
        c = self.config
        text, field = batch["text_tokens"], batch["text_field"]
        B, device = text.shape[0], text.device
        parts: list[Tensor] = []
        masks: list[Tensor] = []
        tid = torch.full((B, 1), self.task_id(task, role), device=device, dtype=torch.long)
        parts.append(self.task_emb(tid) + self.type_emb.weight[self.TYPE_TASK])
        masks.append(torch.ones(B, 1, dtype=torch.bool, device=device))
        other = torch.zeros(B, dtype=torch.bool, device=device)  # item has a non-text modality

        if "audio" in batch:
            if self.audio is None:
                raise ValueError("batch has audio but the model was configured without audio (audio_kind=None)")
            tok, has = self.audio(batch["audio"], batch["audio_mask"])
            parts.append(tok + self.type_emb.weight[self.TYPE_AUDIO])
            masks.append(has[:, None])
            other |= has
        if "image" in batch:
            if self.perceiver is None:
                raise ValueError("batch has images but the model was configured without image input "
                                 "(image_dim=None)")
            tok, has = self.perceiver(batch["image"], batch["image_mask"])  # (B, Nq, H)
            parts.append(tok + self.type_emb.weight[self.TYPE_VISUAL])
            masks.append(has[:, None].expand(B, tok.shape[1]))
            other |= has
        pre_tokens, pre_masks = [], []
        for name in sorted(k[4:] for k in batch if k.startswith("pre_")):
            if name not in self.pre_proj:
                raise ValueError(f"batch has precomputed vector {name!r}; the model knows {sorted(self.pre_proj)}")
            v = batch[f"pre_{name}"]
            has = ~torch.isnan(v).any(1)
            tok = self.pre_proj[name](self.pre_scaling[name](v))[:, None, :]
            pre_tokens.append(tok + self.type_emb.weight[self.TYPE_PRECOMPUTED])
            pre_masks.append(has[:, None])
            other |= has

        if text.shape[-1] != c.text_dim:
            raise ValueError(f"text tokens have dim {text.shape[-1]}, the model expects text_dim={c.text_dim}")
        tmask = field >= 0  # (B, Lt)
        if self.training and c.field_drop_prob > 0:
            tmask = self._drop_fields(field, tmask, text_only=~other)
        text_at = len(masks)
        parts.append(self.text_proj(text) + self.field_emb(field.clamp(min=0)) + self.type_emb.weight[self.TYPE_TEXT])
        masks.append(tmask)
        parts += pre_tokens
        masks += pre_masks
        late = [torch.zeros_like(m) if i in (0, text_at) else m for i, m in enumerate(masks)]  # no task, no text
        return torch.cat(parts, 1), torch.cat(masks, 1), tmask, torch.cat(late, 1)

    def fit_precomputed_scaling(self, precomputed: dict[str, np.ndarray]) -> None:
        """Standardise each precomputed vector with the catalogue's per-dimension mean and spread (the items'
        vectors, content only): raw vectors often share a large common component that would make every item
        look alike. Done once before training; the statistics are buffers, saved with the weights."""
        for name, scaling in self.pre_scaling.items():
            scaling.fit(precomputed[name])

    def residual(self, batch: dict[str, Tensor], tmask: Tensor) -> Tensor | None:
        """S_t @ unit(mean of the item's raw text tokens), or, for an item without text, S_v @ unit(mean of its
        patch features) (image_residual) plus S_p @ unit(standardised vector) per precomputed vector it has
        (precomputed_residual). None without residual paths."""
        if self.text_skip is None and self.image_skip is None and not self.pre_skip:
            return None
        out = None
        has_text = tmask.any(1)
        if self.text_skip is not None:
            w = tmask.to(batch["text_tokens"].dtype)[..., None]
            mean = (batch["text_tokens"] * w).sum(1) / w.sum(1).clamp(min=1.0)  # (B, Dt), 0 without text
            out = self.text_skip(F.normalize(mean, dim=-1))
        if self.image_skip is not None and "image" in batch:
            fm = batch["image_mask"].to(batch["image"].dtype)  # (B, F)
            mean = (batch["image"] * fm[..., None, None]).sum((1, 2)) / (fm.sum(1) * batch["image"].shape[2]
                                                                          ).clamp(min=1.0)[:, None]
            img = self.image_skip(F.normalize(mean, dim=-1)) * (~has_text)[:, None].to(mean.dtype)
            out = img if out is None else out + img
        for name, skip in self.pre_skip.items():
            if f"pre_{name}" not in batch:
                continue
            v = batch[f"pre_{name}"]
            keep = (~torch.isnan(v).any(1) & ~has_text)[:, None].to(tmask.device)
            pre = skip(F.normalize(self.pre_scaling[name](v), dim=-1)) * keep.to(skip.weight.dtype)
            out = pre if out is None else out + pre
        return out

    # ---- forward ------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], role: str = "target", task: str = "i2i") -> EmbeddingOutput:
        raw, pooled, valid, tmask = self.content_raw(batch, role, task)
        if self.memory is not None:
            raw = raw + self.memory(batch, tmask)
        return EmbeddingOutput(embedding=F.normalize(raw, dim=-1), raw=raw, pooled=pooled, token_mask=valid)

    def content_raw(self, batch: dict[str, Tensor], role: str = "target", task: str = "i2i"
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The output before the item memory and the normalisation -> (raw [B, D], pooled [B, H], token mask
        [B, T], text mask [B, Lt] after field dropout). CRE with a frozen fusion model computes it once."""
        if self.training and self.config.modality_drop_prob > 0:
            batch = self._drop_modalities(batch)
        x, valid, tmask, late = self._tokens(batch, role, task)  # (B, T, H), (B, T), (B, Lt), (B, T)
        h = self.fusion(x, src_key_padding_mask=~valid)  # bidirectional attention over valid tokens
        w = valid.to(h.dtype)[..., None]  # (B, T, 1)
        pooled = (torch.tanh(h) * w).sum(1) / w.sum(1)  # mean_pool(tanh(h)) -> (B, H); task token always valid
        raw = self.head(pooled)  # (B, D)
        if self.late_proj is not None:
            raw = self._late_fusion(raw, pooled, x, late)
        skip = self.residual(batch, tmask)
        if skip is not None:
            raw = raw + skip
        return raw, pooled, valid, tmask

    def _late_fusion(self, fused: Tensor, pooled: Tensor, x: Tensor, late: Tensor) -> Tensor:
        """Gated late fusion (NoteLLM-2; SAIL §2): g * fused + (1 - g) * proj(mean of the item's non-text tokens
        before fusion), g = sigmoid(W [pooled; that mean]); items without such tokens keep `fused`."""
        m = late.to(x.dtype)[..., None]
        mean = (x * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)
        gate = torch.sigmoid(self.late_gate(torch.cat([pooled, mean], -1)))
        mixed = gate * fused + (1 - gate) * self.late_proj(mean)
        return torch.where(late.any(1, keepdim=True), mixed, fused)

    def configure_optimizer(self, lr: float, weight_decay: float, extra_params: list[nn.Parameter] = (),
                            betas: tuple[float, float] = (0.9, 0.98), residual_lr_scale: float = 1.0
                            ) -> torch.optim.AdamW:
        """AdamW with decay on matrices only (not on biases, norms, embeddings' 1-d params, temperatures).
        The residual maps (text_skip, image_skip, pre_skip) get no decay and `residual_lr_scale` x the learning
        rate. Each group's lr is its peak; a schedule (embedding.schedule) scales every group from there."""
        skip = {id(p) for m in (self.text_skip, self.image_skip, self.pre_skip) if m is not None
                for p in m.parameters()}
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in skip]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2] + list(extra_params)
        groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr},
                  {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
        residual = [p for p in self.parameters() if p.requires_grad and id(p) in skip]
        if residual:
            groups.append({"params": residual, "weight_decay": 0.0, "lr": lr * residual_lr_scale})
        return torch.optim.AdamW(groups, lr=lr, betas=betas)

    # ---- persistence --------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write model.safetensors + config.json, each atomically (recsys.io)."""
        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_file(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        write_json(directory / CONFIG_NAME, self.config.model_dump())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> OmniEmbeddingModel:
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file() or not (directory / WEIGHTS_NAME).is_file():
            raise DataError(f"no {CONFIG_NAME} + {WEIGHTS_NAME} here: not a saved embedding model (a missing or "
                            "moved run directory, or a stage that did not finish: rerun it)", file=str(directory))
        raw = json.loads((directory / CONFIG_NAME).read_text())
        for key in ("text_residual", "image_residual"):  # saved before the residual paths existed: none
            raw.setdefault(key, False)
        config = OmniEmbeddingConfig.model_validate(raw)
        model = cls(config)
        missing, unexpected = model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)), strict=False)
        if missing or unexpected:
            raise DataError(f"the weights do not match {CONFIG_NAME} (missing {sorted(missing)[:5]}, unexpected "
                            f"{sorted(unexpected)[:5]}): saved by another version of the model; retrain it "
                            "(--force embedding)", file=str(directory / WEIGHTS_NAME))
        return model.to(device).eval()

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["OmniEmbeddingModel", "EmbeddingOutput", "InputMemory", "PrecomputedScaling", "AudioTokenizer", "ROLES"]
