"""What the modality encoders hand to the fusion model: token-level features aligned to items."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

TEXT_FIELDS: tuple[str, ...] = ("title", "description", "tags", "categories", "ocr", "asr", "author")
"""Text fields in field-index order; each is encoded separately so training can drop whole fields."""


@dataclass
class TextTokens:
    """Token features of texts; used for item text fields, queries and label texts."""

    tokens: np.ndarray  # [N, Lt, Dt] float16, zero padded
    field: np.ndarray  # [N, Lt] int8: index into TEXT_FIELDS of each token, -1 = padding

    def take(self, idx: np.ndarray) -> "TextTokens":
        return TextTokens(self.tokens[idx], self.field[idx])

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class EncodedItems:
    """Per-modality encoder outputs for items, row-aligned with `item_ids`."""

    item_ids: np.ndarray  # [N] int64
    text: TextTokens
    pooled_text: np.ndarray  # [N, Dt] float32, mean-pooled text of all fields (text-only baseline)
    image: np.ndarray | None = None  # [N, F, P, Di] float16 patch tokens, cover first
    image_mask: np.ndarray | None = None  # [N, F] bool
    audio: np.ndarray | None = None  # [N, K, n_mels, T] ("logmel") or [N, K, Da] ("embedding") float16
    audio_mask: np.ndarray | None = None  # [N, K] bool; all False = no audio
    audio_kind: str = "logmel"
    precomputed: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [N, D] float32, NaN = missing
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.item_ids)

    def index_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Row positions of the given item ids; raises KeyError naming an unknown id."""
        lookup = {int(i): n for n, i in enumerate(self.item_ids)}
        try:
            return np.array([lookup[int(i)] for i in np.asarray(item_ids)], dtype=np.int64)
        except KeyError as e:
            raise KeyError(f"item_id {e.args[0]} is not among the encoded items") from None

    def take(self, idx: np.ndarray) -> "EncodedItems":
        idx = np.asarray(idx)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return replace(
            self, item_ids=self.item_ids[idx], text=self.text.take(idx), pooled_text=self.pooled_text[idx],
            image=pick(self.image), image_mask=pick(self.image_mask), audio=pick(self.audio),
            audio_mask=pick(self.audio_mask), precomputed={k: v[idx] for k, v in self.precomputed.items()},
        )
