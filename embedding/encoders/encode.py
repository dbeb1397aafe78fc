"""encode_items / encode_texts: batched, cached, resumable encoding of every item modality.

Cache key of a record = (item id, content hash of that modality's input, encoder identity): the text strings of all
fields, the bytes of the image files (first F frames), the bytes of the audio file. The identity (model name or
path + every setting that changes the output) selects the cache directory. A second run with the same inputs encodes
nothing and does not even load the models; an interrupted run keeps every finished shard.

Missing or corrupt media never crash a run: the frame / clip is treated as absent (mask False), counted, logged and
listed in info["skipped"]. Their status is cached too (keyed by the same bytes), so a fixed file is picked up.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from embedding.encoders import audio as audio_mod
from embedding.encoders import image as image_mod
from embedding.encoders.audio import AudioEncoder, chunk_waveform, load_audio
from embedding.encoders.cache import FeatureCache, ShardWriter, record_key, sha1
from embedding.encoders.config import EncoderConfig
from embedding.encoders.image import ImageEncoder, load_image
from embedding.encoders.precomputed import precomputed_vectors
from embedding.encoders.text import TextEncoder, assemble_tokens, item_field_texts
from embedding.encoders.types import TEXT_FIELDS, EncodedItems, TextTokens
from recsys.runtime import cpu_threads, resolve_device

log = logging.getLogger(__name__)

_ENCODERS: dict[tuple, object] = {}


def clear_encoder_cache() -> None:
    """Forget the loaded encoder models kept between calls."""
    _ENCODERS.clear()


def _get(cls, sub_cfg, device: torch.device, export_dir: Path | None = None):
    """The loaded encoder of this config and device (ONNX exports kept in export_dir: the run's cache)."""
    key = (cls.__name__, sub_cfg.model_dump_json(), str(device), str(export_dir))
    if key not in _ENCODERS:
        _ENCODERS[key] = cls(sub_cfg, device, export_dir) if export_dir is not None else cls(sub_cfg, device)
    return _ENCODERS[key]


def _chunks(seq: list, size: int) -> Iterator[list]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _disable(cfg: EncoderConfig) -> bool | None:
    return None if cfg.progress is None else not cfg.progress


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _content_hash(data: bytes | None) -> str:
    return "missing" if data is None else sha1(data)


# ------------------------------------------------------------------------------------------------------- text
def _text_cache(enc: TextEncoder, cfg: EncoderConfig, cache_dir: Path, use: str, **extra) -> FeatureCache:
    t = cfg.text
    ident = {**enc.identity, "use": use, "dtype": cfg.cache_dtype, **extra}
    if use == "items":
        ident.update(caps={f: t.cap(f) for f in TEXT_FIELDS}, max_tokens=t.max_tokens)
    return FeatureCache(cache_dir, "text", ident)


def _encode_text_records(enc: TextEncoder, cache: FeatureCache, keys: list[str],
                         fields_of: list[dict[str, str]], caps: dict[str, int], max_tokens: int | None,
                         cfg: EncoderConfig, desc: str) -> int:
    """Encode the records whose key is not cached; returns how many were encoded."""
    todo: dict[str, int] = {}
    for pos in cache.missing(keys):
        todo.setdefault(keys[pos], pos)
    todo_pos = list(todo.values())
    if not todo_pos:
        return 0
    dtype = np.dtype(cfg.cache_dtype)
    writer = ShardWriter(cache, cfg.shard_size)
    with tqdm(total=len(todo_pos), desc=desc, unit="item", disable=_disable(cfg)) as bar:
        for chunk in _chunks(todo_pos, cfg.shard_size):
            per_field: dict[str, dict[int, np.ndarray]] = {}
            for f in TEXT_FIELDS:
                pos = [p for p in chunk if f in fields_of[p]]
                if pos:
                    feats = enc.encode([fields_of[p][f] for p in pos], caps[f])
                    per_field[f] = dict(zip(pos, feats))
            dim = enc.dim
            for p in chunk:
                toks, fids = [], []
                for fi, f in enumerate(TEXT_FIELDS):
                    if p in per_field.get(f, {}):
                        t = per_field[f][p]
                        toks.append(t)
                        fids.append(np.full(len(t), fi, dtype=np.int8))
                tokens = np.concatenate(toks) if toks else np.zeros((0, dim), np.float32)
                field = np.concatenate(fids) if fids else np.zeros((0,), np.int8)
                if max_tokens is not None:
                    tokens, field = tokens[:max_tokens], field[:max_tokens]
                writer.add(keys[p], {"tokens": tokens.astype(dtype), "field": field})
            writer.flush()
            bar.update(len(chunk))
    return len(todo_pos)


def _text_dim(records: list[dict[str, np.ndarray]], enc: TextEncoder) -> int:
    return int(records[0]["tokens"].shape[1]) if records else enc.dim


def encode_texts(texts: list[str], cfg: EncoderConfig | None = None, cache_dir: Path | str | None = None,
                 device: str | None = "auto", field: str = "title", cap: int | None = None) -> TextTokens:
    """Token features of free texts (queries, label texts) with the items' text encoder.

    Every token carries the field index of `field` (default "title": a query reads like a title; pass "categories"
    for label texts such as genres). At most `cap` (default cfg.text.query_cap) tokens per text. Cached under
    cache_dir (None = no cache) keyed by (field, text).
    """
    cfg = cfg or EncoderConfig()
    if field not in TEXT_FIELDS:
        raise ValueError(f"field '{field}' is not one of {list(TEXT_FIELDS)}")
    cap = int(cap or cfg.text.query_cap)
    dev = resolve_device(cfg.device if device is None else device)
    texts = [str(t) for t in texts]
    with cpu_threads(cfg.num_threads):
        enc = _get(TextEncoder, cfg.text, dev, Path(cache_dir) / "onnx" if cache_dir is not None else None)
        fields_of = [{field: t.strip()} if t.strip() else {} for t in texts]
        keys = [record_key(None, sha1(field, str(cap), t.strip())) for t in texts]
        if cache_dir is None:
            with tempfile.TemporaryDirectory() as tmp:
                return _texts_from_cache(enc, cfg, Path(tmp), keys, fields_of, field, cap, texts)
        return _texts_from_cache(enc, cfg, Path(cache_dir), keys, fields_of, field, cap, texts)


def _texts_from_cache(enc, cfg, cache_dir, keys, fields_of, field, cap, texts) -> TextTokens:
    cache = _text_cache(enc, cfg, cache_dir, "texts")
    caps = {f: cap for f in TEXT_FIELDS}
    _encode_text_records(enc, cache, keys, fields_of, caps, None, cfg, "encode texts")
    records = [cache.get(k) for k in keys]
    if not records:
        dim = enc.dim
        return TextTokens(np.zeros((0, 1, dim), np.float16), np.full((0, 1), -1, np.int8))
    pad_to = cap if cfg.text.pad_to == "caps" else None
    tokens, fids, _ = assemble_tokens(records, _text_dim(records, enc), pad_to, np.dtype(cfg.cache_dtype))
    return TextTokens(tokens, fids)


def _item_text(items: pd.DataFrame, cfg: EncoderConfig, cache_dir: Path, dev, info: dict):
    enc = _get(TextEncoder, cfg.text, dev, Path(cache_dir) / "onnx")
    cache = _text_cache(enc, cfg, cache_dir, "items")
    cols = [c for c in TEXT_FIELDS if c in items.columns]
    fields_of = [item_field_texts(r) for r in items[cols].to_dict("records")]
    keys = [record_key(i, sha1(json.dumps(f, sort_keys=True, ensure_ascii=False)))
            for i, f in zip(items["item_id"].tolist(), fields_of)]
    caps = {f: cfg.text.cap(f) for f in TEXT_FIELDS}
    n = _encode_text_records(enc, cache, keys, fields_of, caps, cfg.text.max_tokens, cfg, "encode text")
    records = [cache.get(k) for k in keys]
    pad_to = cfg.text.total_cap if cfg.text.pad_to == "caps" else None
    tokens, fids, pooled = assemble_tokens(records, _text_dim(records, enc), pad_to, np.dtype(cfg.cache_dtype))
    info["encoded"]["text"] = n
    info["cached"]["text"] = len(keys) - n
    info["identity"]["text"] = enc.identity
    info["dims"].update(Lt=int(tokens.shape[1]), Dt=int(tokens.shape[2]))
    return TextTokens(tokens, fids), pooled


# ------------------------------------------------------------------------------------------------------ image
def _item_images(ds, cfg: EncoderConfig, cache_dir: Path, dev, info: dict):
    icfg = cfg.image
    items = ds.items
    frames_of = [list(p)[:icfg.max_frames] for p in items["image_paths"]]
    n_frames = max([0, *map(len, frames_of)])
    if n_frames == 0:
        return None, None
    enc = _get(ImageEncoder, icfg, dev, Path(cache_dir) / "onnx")
    cache = FeatureCache(cache_dir, "image", {**enc.identity, "dtype": cfg.cache_dtype})
    ids = items["item_id"].tolist()
    keys: list[str | None] = []
    for iid, paths in zip(ids, frames_of):
        if not paths:
            keys.append(None)
            continue
        hashes = [_content_hash(_read(ds.media_path(p))) for p in paths]
        keys.append(record_key(iid, sha1(*hashes)))
    todo = [i for i in cache.missing([k or "" for k in keys]) if keys[i] is not None]
    dtype = np.dtype(cfg.cache_dtype)
    if todo:
        writer = ShardWriter(cache, cfg.shard_size)
        size = enc.input_size
        with tqdm(total=len(todo), desc="encode image", unit="item", disable=_disable(cfg)) as bar:
            for chunk in _chunks(todo, cfg.shard_size):
                status = {i: np.zeros(len(frames_of[i]), np.int8) for i in chunk}
                pixels, where = [], []
                for i in chunk:
                    for j, p in enumerate(frames_of[i]):
                        data = _read(ds.media_path(p))
                        if data is None:
                            status[i][j] = image_mod.MISSING
                            continue
                        try:
                            pixels.append(load_image(data, size))
                            where.append((i, j))
                        except Exception:
                            status[i][j] = image_mod.UNREADABLE
                feats = {i: np.zeros((len(frames_of[i]), enc.n_patches, enc.dim), dtype) for i in chunk}
                for b in range(0, len(pixels), icfg.batch_size):
                    out = enc.encode(np.stack(pixels[b:b + icfg.batch_size]))
                    for (i, j), f in zip(where[b:b + icfg.batch_size], out):
                        feats[i][j] = f
                for i in chunk:
                    writer.add(keys[i], {"feats": feats[i], "status": status[i]})
                writer.flush()
                bar.update(len(chunk))
    image = mask = None
    skipped = []
    for row, k in enumerate(keys):
        if k is None:
            continue
        rec = cache.get(k)
        if image is None:
            P, Di = rec["feats"].shape[1:]
            image = np.zeros((len(items), n_frames, P, Di), dtype)
            mask = np.zeros((len(items), n_frames), bool)
        nf = len(rec["status"])
        image[row, :nf] = rec["feats"]
        mask[row, :nf] = rec["status"] == image_mod.OK
        for j in np.flatnonzero(rec["status"] != image_mod.OK):
            skipped.append({"item_id": int(ids[row]), "path": str(frames_of[row][j]),
                            "reason": image_mod.STATUS_TEXT[int(rec["status"][j])]})
    info["encoded"]["image"] = len(todo)
    info["cached"]["image"] = sum(k is not None for k in keys) - len(todo)
    info["identity"]["image"] = enc.identity
    info["skipped"]["image"] = skipped
    info["dims"].update(F=int(image.shape[1]), P=int(image.shape[2]), Di=int(image.shape[3]))
    return image, mask


# ------------------------------------------------------------------------------------------------------ audio
def _item_audio(ds, cfg: EncoderConfig, cache_dir: Path, dev, info: dict):
    acfg = cfg.audio
    items = ds.items
    paths = items["audio_path"].tolist()
    if not any(p is not None for p in paths):
        return None, None
    enc = _get(AudioEncoder, acfg, dev)
    cache = FeatureCache(cache_dir, "audio", {**enc.identity, "dtype": cfg.cache_dtype})
    ids = items["item_id"].tolist()
    keys = [None if p is None else record_key(i, _content_hash(_read(ds.media_path(p)))) for i, p in zip(ids, paths)]
    todo = [i for i in cache.missing([k or "" for k in keys]) if keys[i] is not None]
    dtype = np.dtype(cfg.cache_dtype)
    if todo:
        writer = ShardWriter(cache, cfg.shard_size)
        shape = enc.out_shape
        with tqdm(total=len(todo), desc="encode audio", unit="item", disable=_disable(cfg)) as bar:
            for chunk in _chunks(todo, cfg.shard_size):
                status, waves = {}, {}
                for i in chunk:
                    data = _read(ds.media_path(paths[i]))
                    if data is None:
                        status[i] = audio_mod.MISSING
                        continue
                    try:
                        wave = load_audio(data, enc.sample_rate)
                    except Exception:
                        status[i] = audio_mod.UNREADABLE
                        continue
                    if len(wave) == 0:
                        status[i] = audio_mod.EMPTY
                        continue
                    waves[i] = chunk_waveform(wave, enc.chunk_samples, acfg.max_chunks)
                    status[i] = audio_mod.OK
                order = list(waves)
                flat = np.concatenate([waves[i] for i in order]) if order else np.zeros((0, enc.chunk_samples))
                outs = [enc.encode(flat[b:b + acfg.batch_size].astype(np.float32))
                        for b in range(0, len(flat), acfg.batch_size)]
                flat_out = np.concatenate(outs) if outs else np.zeros((0, *shape), np.float32)
                start = 0
                per_item = {}
                for i in order:
                    k = len(waves[i])
                    per_item[i] = flat_out[start:start + k]
                    start += k
                for i in chunk:
                    rec = per_item.get(i, np.zeros((0, *shape), np.float32)).astype(dtype)
                    writer.add(keys[i], {"chunks": rec, "status": np.array([status[i]], np.int8)})
                writer.flush()
                bar.update(len(chunk))
    records = {row: cache.get(k) for row, k in enumerate(keys) if k is not None}
    shape = next(iter(records.values()))["chunks"].shape[1:]
    n_chunks = max([1, *(len(r["chunks"]) for r in records.values())])
    audio = np.zeros((len(items), n_chunks, *shape), dtype)
    mask = np.zeros((len(items), n_chunks), bool)
    skipped = []
    for row, rec in records.items():
        k = len(rec["chunks"])
        audio[row, :k] = rec["chunks"]
        mask[row, :k] = True
        st = int(rec["status"][0])
        if st != audio_mod.OK:
            skipped.append({"item_id": int(ids[row]), "path": str(paths[row]), "reason": audio_mod.STATUS_TEXT[st]})
    info["encoded"]["audio"] = len(todo)
    info["cached"]["audio"] = len(records) - len(todo)
    info["identity"]["audio"] = enc.identity
    info["skipped"]["audio"] = skipped
    info["dims"].update(K=int(n_chunks), audio=[int(s) for s in shape])
    return audio, mask


# ------------------------------------------------------------------------------------------------------- items
def encode_items(ds, cfg: EncoderConfig | None = None, cache_dir: Path | str = "cache/encoders",
                 device: str | None = "auto") -> EncodedItems:
    """Encode every item of a canonical Dataset (rows aligned with ds.items) through the feature cache.

    info: identity (per modality), dims (Lt, Dt, F, P, Di, K, audio), encoded / cached (item counts of this call),
    skipped (modality -> [{item_id, path, reason}] for missing or corrupt media, treated as absent).
    """
    cfg = cfg or EncoderConfig()
    dev = resolve_device(cfg.device if device is None else device)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    info: dict = {"identity": {}, "dims": {}, "encoded": {}, "cached": {}, "skipped": {}, "device": str(dev)}
    items = ds.items
    with cpu_threads(cfg.num_threads):
        if cfg.text.enabled:
            text, pooled = _item_text(items, cfg, cache_dir, dev, info)
        else:
            text = TextTokens(np.zeros((len(items), 1, 1), np.float16), np.full((len(items), 1), -1, np.int8))
            pooled = np.zeros((len(items), 1), np.float32)
        image = image_mask = audio = audio_mask = None
        if cfg.image.enabled:
            image, image_mask = _item_images(ds, cfg, cache_dir, dev, info)
        if cfg.audio.enabled:
            audio, audio_mask = _item_audio(ds, cfg, cache_dir, dev, info)
    audio_kind = "logmel" if cfg.audio.model == "logmel" else "embedding"
    for modality, rows in info["skipped"].items():
        if rows:
            log.warning("%d %s file(s) missing or unreadable, treated as absent (e.g. %s)", len(rows), modality,
                        "; ".join(f"item {r['item_id']}: {r['path']} ({r['reason']})" for r in rows[:3]))
    info["n_skipped"] = {m: len(r) for m, r in info["skipped"].items()}
    info["audio_kind"] = audio_kind
    return EncodedItems(
        item_ids=items["item_id"].to_numpy(np.int64), text=text, pooled_text=pooled, image=image,
        image_mask=image_mask, audio=audio, audio_mask=audio_mask, audio_kind=audio_kind,
        precomputed=precomputed_vectors(items) if cfg.precomputed else {}, info=info,
    )
