"""encode_items / encode_texts through the feature cache: shapes, second run encodes nothing, resume from shards,
corrupt media skipped, HF checkpoints, the shipped weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding.encoders import TEXT_FIELDS, EncoderConfig, clear_encoder_cache, encode_items, encode_texts
from embedding.encoders.image import ImageEncoder


def test_encode_items_shapes_and_second_run_encodes_nothing(tmp_path, tiny_models, tiny_cfg, make_dataset, write_image,
                                                            counting):
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

    # a changed input re-encodes only that item; a changed encoder setting gets its own cache
    write_image(Path(ds.items["image_paths"][0][0]), seed=999)
    third = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert third.info["encoded"] == {"text": 0, "image": 1, "audio": 0}
    other = encode_items(ds, tiny_cfg(tiny_models, image={"grid": [1, 1]}), tmp_path / "cache", device="cpu")
    assert other.info["encoded"]["image"] == 4 and other.image.shape[2] == 1


def test_interrupted_run_resumes_from_finished_shards(tmp_path, tiny_models, tiny_cfg, make_dataset, monkeypatch):
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
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".")]
    assert len(shards) == 1 and not leftovers  # atomic shard writes: no half-written temp file
    monkeypatch.setattr(ImageEncoder, "encode", orig)
    clear_encoder_cache()
    enc = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert enc.info["encoded"]["image"] == 2 and enc.info["cached"]["image"] == 2  # 4 items with images
    assert enc.info["encoded"]["text"] == 0  # text finished before the interrupt


def test_corrupt_and_missing_media_are_skipped_not_fatal(tmp_path, tiny_models, tiny_cfg, make_dataset, counting):
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


def test_hf_audio_checkpoint_gives_frozen_embeddings(tmp_path, tiny_models, tiny_cfg, make_dataset):
    ds = make_dataset(tmp_path)
    cfg = tiny_cfg(tiny_models, audio={"model": tiny_models["ast"], "sample_rate": 16000}, image={"enabled": False})
    enc = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert enc.audio_kind == "embedding" and enc.image is None
    assert enc.audio.shape == (len(ds.items), 3, 32) and enc.audio_mask.sum() == 7
    assert np.isfinite(enc.audio.astype(np.float32)).all()
    assert enc.info["identity"]["audio"]["sample_rate"] == 16000


def test_encode_texts_for_queries_and_labels(tmp_path, tiny_models, tiny_cfg, counting):
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
def test_shipped_minilm_and_efficientnet_weights(tmp_path, make_dataset, sample_rate):
    ds = make_dataset(tmp_path, n=3)
    cfg = EncoderConfig(audio={"sample_rate": sample_rate}, progress=False)
    enc = encode_items(ds, cfg, tmp_path / "cache", device="cpu")
    assert enc.text.tokens.shape[2] == 384 and enc.pooled_text.shape == (3, 384)
    assert enc.image.shape == (3, 2, 16, 320) and enc.info["dims"]["P"] == 16
    assert np.isfinite(enc.image.astype(np.float32)).all() and enc.image[0, 0].std() > 0
    q = encode_texts(["a cat sitting on a mat", "a kitten resting on a rug", "stock market crash"], cfg,
                     tmp_path / "cache", device="cpu")
    pooled = np.stack([q.tokens[i][q.field[i] >= 0].astype(np.float32).mean(0) for i in range(3)])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.1
