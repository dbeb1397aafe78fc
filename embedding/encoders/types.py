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

    def take(self, idx: np.ndarray) -> TextTokens:
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

    def modalities(self) -> list[str]:
        """The modalities some item has: "text", "image", "audio", "vec_<name>"."""
        out = ["text"] if (self.text.field >= 0).any() else []
        if self.image_mask is not None and self.image_mask.any():
            out.append("image")
        if self.audio_mask is not None and self.audio_mask.any():
            out.append("audio")
        return out + [f"vec_{k}" for k, v in sorted(self.precomputed.items()) if (~np.isnan(v).any(1)).any()]

    def without(self, modality: str) -> EncodedItems:
        """The same items with one modality missing for every item (what robustness to a missing input is
        measured with)."""
        if modality not in self.modalities():
            raise ValueError(f"no item has {modality!r}; the items have {self.modalities()}")
        text, image_mask, audio_mask = self.text, self.image_mask, self.audio_mask
        precomputed = dict(self.precomputed)
        if modality == "text":
            text = TextTokens(self.text.tokens, np.full_like(self.text.field, -1))
        elif modality == "image":
            image_mask = np.zeros_like(self.image_mask)
        elif modality == "audio":
            audio_mask = np.zeros_like(self.audio_mask)
        else:
            name = modality.removeprefix("vec_")
            precomputed[name] = np.full_like(self.precomputed[name], np.nan)
        return replace(self, text=text, image_mask=image_mask, audio_mask=audio_mask, precomputed=precomputed)

    def take(self, idx: np.ndarray) -> EncodedItems:
        """Rows `idx` of every modality, in that order (`info` is kept)."""
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return replace(self, item_ids=self.item_ids[idx], text=self.text.take(idx), pooled_text=self.pooled_text[idx],
                       image=pick(self.image), image_mask=pick(self.image_mask), audio=pick(self.audio),
                       audio_mask=pick(self.audio_mask),
                       precomputed={k: v[idx] for k, v in self.precomputed.items()})


_ARRAYS = ("item_ids", "pooled_text", "image", "image_mask", "audio", "audio_mask")


def save_encoded(encoded: EncodedItems, path) -> None:
    """One .npz of the encoder outputs (no pickles; `info` is not kept): what a Spark executor reads its share of
    the catalogue from (embedding.spark_infer)."""
    arrays = {k: getattr(encoded, k) for k in _ARRAYS if getattr(encoded, k) is not None}
    arrays |= {"text_tokens": encoded.text.tokens, "text_field": encoded.text.field,
               "audio_kind": np.array(encoded.audio_kind)}
    arrays |= {f"vec__{k}": v for k, v in encoded.precomputed.items()}
    np.savez(path, **arrays)


def load_encoded(path) -> EncodedItems:
    """The EncodedItems save_encoded wrote."""
    with np.load(path, allow_pickle=False) as z:
        get = lambda k: z[k] if k in z.files else None  # noqa: E731
        return EncodedItems(
            item_ids=z["item_ids"], text=TextTokens(z["text_tokens"], z["text_field"]), pooled_text=z["pooled_text"],
            image=get("image"), image_mask=get("image_mask"), audio=get("audio"), audio_mask=get("audio_mask"),
            audio_kind=str(z["audio_kind"]),
            precomputed={k.removeprefix("vec__"): z[k] for k in z.files if k.startswith("vec__")})
