"""Frozen modality encoders with a feature cache: dataset items -> EncodedItems (see docs/contracts.md §2).

    encode_items(ds, cfg=EncoderConfig(), cache_dir="cache/encoders", device="auto") -> EncodedItems
    encode_texts(texts, cfg=None, cache_dir=None, device="auto", field="title", cap=None) -> TextTokens
    ConvAudioEncoder(n_mels, out_dim)   # trainable: [B, n_mels, T] -> [B, out_dim]
    LogMel(...)                          # torch log-mel front end: [B, samples] -> [B, n_mels, samples // hop]

Outputs with the default config (fp16 unless cache_dtype="float32"):
- text.tokens [N, Lt, 384], text.field [N, Lt] int8 (index into TEXT_FIELDS, -1 = pad). Each field is encoded
  separately by all-MiniLM-L6-v2 (max caps: title 16, description 32, tags 16, categories 8, ocr 16, asr 16,
  author 8 word pieces); [CLS]/[SEP] are dropped; present fields are concatenated in TEXT_FIELDS order with valid
  tokens first, then zero padding. Lt = the longest item of the call (text.pad_to="longest"; "caps" pads to
  the sum of caps, 112). pooled_text [N, 384] float32 = mean of all valid tokens (zeros for an item without text).
- encode_texts: every token carries the index of `field` ("title" for queries; "categories" suits label texts).
- image [N, F, 16, 320] + image_mask [N, F]: EfficientNet-Lite0 at 192x128, 320-ch last-block map (linear, signed
  values; image.feature="head" gives the 1280-ch ReLU6 head) pooled to a 4x4 grid (row-major, top-left first);
  F = min(max_frames=4, most image paths of any item); frame j = image_paths[j] (cover in slot 0; a
  missing/corrupt frame keeps its slot with mask False). None when no item has images.
- audio [N, K, 64, 100] ("logmel": 2 s chunks at 16 kHz, hop 20 ms) or [N, K, Da] ("embedding"), audio_mask [N, K];
  K = min(max_chunks=4, most chunks of any clip). None when no item has audio.
- precomputed {modality: [N, D] float32} from vec_<modality> columns, NaN rows where missing.
- info: identity, dims (Lt, Dt, F, P, Di, K, audio), encoded / cached counts, skipped {modality: [{item_id, path,
  reason}]}, n_skipped.
"""

from embedding.encoders.audio import ConvAudioEncoder, LogMel
from embedding.encoders.config import (
    AudioEncoderConfig,
    EncoderConfig,
    ImageEncoderConfig,
    TextEncoderConfig,
)
from embedding.encoders.encode import clear_encoder_cache, encode_items, encode_texts
from embedding.encoders.types import TEXT_FIELDS, EncodedItems, TextTokens

__all__ = [
    "TEXT_FIELDS", "AudioEncoderConfig", "ConvAudioEncoder", "EncodedItems", "EncoderConfig", "ImageEncoderConfig",
    "LogMel", "TextEncoderConfig", "TextTokens", "clear_encoder_cache", "encode_items", "encode_texts",
]
