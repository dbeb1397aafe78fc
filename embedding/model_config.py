"""Configuration of the omni-modal embedding model (beside embedding/model.py, as HF keeps configuration_*.py
beside modeling_*.py): what `OmniEmbeddingModel(config)` builds and what `save_pretrained` writes to config.json.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from embedding.encoders.types import EncodedItems


class OmniEmbeddingConfig(BaseModel):
    """Sizes of the inputs (from the encoders) and of the fusion model.

    Input dims default to the shipped encoders (MiniLM 384-d text, EfficientNet-lite0 1280-d patches) but are
    normally filled from the data by `with_inputs(encoded)`.
    """

    model_config = ConfigDict(extra="forbid")

    # inputs
    text_dim: int = Field(384, gt=0, description="Dt, text token feature size")
    image_dim: int | None = Field(None, gt=0, description="Di, image patch feature size; None = no image input")
    audio_kind: Literal["logmel", "embedding"] | None = Field(None, description="None = no audio input")
    audio_dim: int | None = Field(None, gt=0, description="n_mels for 'logmel', Da for 'embedding'")
    audio_channels: list[int] = Field(default_factory=lambda: [8, 16, 32, 64],
                                      description="conv widths of the log-mel encoder (ConvAudioEncoder)")
    audio_train_chunks: int | None = Field(1, gt=0, description="chunks per item encoded in training (a random "
                                                                "subset, for speed); all at inference; None = all")
    precomputed: dict[str, int] = Field(default_factory=dict, description="precomputed vector name -> dim")
    max_frames: int = Field(8, gt=0, description="size of the frame-embedding table")
    max_patches: int = Field(64, gt=0, description="size of the patch-position table (7x7 = 49 for lite0)")
    # fusion
    hidden: int = Field(128, gt=0, description="H, fusion width (128 fits the 2-core CPU demo budget; 256+ with "
                                               "a GPU or more time)")
    layers: int = Field(2, gt=0, description="fusion transformer layers")
    heads: int = Field(4, gt=0)
    ffn_mult: int = Field(4, gt=0, description="feed-forward width = ffn_mult * hidden")
    dropout: float = Field(0.0, ge=0, lt=1, description="0: few steps on small data; costly on CPU")
    n_latents: int = Field(16, gt=0, description="Perceiver latent queries = visual tokens per item (SAIL: 16)")
    perceiver_layers: int = Field(1, gt=0)
    # output
    embed_dim: int = Field(256, gt=0, description="D, output embedding size")
    matryoshka_dims: list[int] = Field(default_factory=lambda: [64, 128],
                                       description="trained prefixes below embed_dim (SAIL: 768 and 128 of 1536)")
    # training-time input noise
    field_drop_prob: float = Field(0.15, ge=0, lt=1, description="per-field text dropout in training")
    modality_drop_prob: float = Field(0.0, ge=0, lt=1, description="per-item dropout of the image, audio and each "
                                      "precomputed vector in training (as if missing); an item keeps at least one "
                                      "of its modalities")
    # initialisation (our choice; SAIL starts from a pretrained LLM)
    text_residual: bool = Field(True, description="add S @ normalize(mean of the raw text tokens) to the output, "
                                                  "S: text_dim -> embed_dim initialised orthogonally")
    image_residual: bool = Field(True, description="same for the mean image patch feature of items WITHOUT text")
    precomputed_residual: bool = Field(True, description="same for each standardised precomputed vector "
                                                         "(vec_<name>) of items WITHOUT text: vector-only items "
                                                         "get their vectors' neighbourhoods, not a zero vector")
    head_init_std: float = Field(0.0, ge=0, description="init std of the fusion projection (near 0 with the "
                                                         "residual: training starts from the text baseline)")
    late_fusion: bool = Field(False, description="gated late fusion (NoteLLM-2, SAIL §2): mix the fused output "
                                                 "with a projection of the item's audio / visual / vector tokens "
                                                 "before fusion, through a learnt sigmoid gate")
    memory_hidden: int = Field(0, ge=0, description="width of the item memory (InputMemory): an MLP from the "
                                                    "pooled raw inputs added to the output; 0 = none (CRE adds it)")
    # task instructions: one learned token per (task, role)
    tasks: list[str] = Field(default_factory=lambda: ["i2i", "q2i", "label", "seq2item"])

    @model_validator(mode="after")
    def _check(self) -> OmniEmbeddingConfig:
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        bad = [d for d in self.matryoshka_dims if not 0 < d < self.embed_dim]
        if bad:
            raise ValueError(f"matryoshka_dims {bad} must lie strictly between 0 and embed_dim={self.embed_dim}")
        if self.audio_kind is not None and self.audio_dim is None:
            raise ValueError(f"audio_dim is required when audio_kind={self.audio_kind!r}")
        if len(set(self.tasks)) != len(self.tasks) or not self.tasks:
            raise ValueError(f"tasks must be a non-empty list of distinct names, got {self.tasks}")
        return self

    @property
    def all_dims(self) -> list[int]:
        """Matryoshka prefixes plus the full size, ascending."""
        return sorted({*self.matryoshka_dims, self.embed_dim})

    def with_inputs(self, encoded: EncodedItems) -> OmniEmbeddingConfig:
        """A copy whose input sizes match what the encoders produced."""
        update: dict = {"text_dim": int(encoded.text.tokens.shape[-1]),
                        "precomputed": {k: int(v.shape[1]) for k, v in encoded.precomputed.items()}}
        if encoded.image is not None:
            update.update(image_dim=int(encoded.image.shape[-1]),
                          max_frames=max(self.max_frames, int(encoded.image.shape[1])),
                          max_patches=max(self.max_patches, int(encoded.image.shape[2])))
        else:
            update["image_dim"] = None
        if encoded.audio is not None:
            kind = encoded.audio_kind
            update.update(audio_kind=kind, audio_dim=int(encoded.audio.shape[2] if kind == "logmel"
                                                         else encoded.audio.shape[-1]))
        else:
            update.update(audio_kind=None, audio_dim=None)
        return self.model_validate({**self.model_dump(), **update})


__all__ = ["OmniEmbeddingConfig"]
