"""Dataset-driven pattern matching: views remove inputs as missing ones look, a pattern without its modality
contributes no loss, and patterns train in one run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedding.batches import Batch, collate
from embedding.encoders.types import TEXT_FIELDS
from embedding.model import OmniEmbeddingModel
from embedding.patterns import Pattern, View, embed_patterns, parse_patterns, pattern_loss, stack_views
from embedding.train import train_embedding
from tests.embedding.test_train import _weights, tiny_cfg


def test_views_keep_only_their_inputs(enc):
    batch = collate(enc, np.arange(len(enc)))
    image, has = View.parse("image").apply(batch)
    assert not (image["text_field"] >= 0).any() and not image["audio_mask"].any()
    assert all(torch.isnan(image[k]).all() for k in image if k.startswith("pre_"))
    assert torch.equal(has, batch["image_mask"].any(1))
    title, has = View.parse("text[title]").apply(batch)
    kept = title["text_field"][title["text_field"] >= 0]
    assert set(kept.tolist()) <= {TEXT_FIELDS.index("title")} and not title["image_mask"].any()
    assert torch.equal(has, (batch["text_field"] == TEXT_FIELDS.index("title")).any(1))
    omni, has = View.parse("omni").apply(batch)
    assert omni is batch and has.all()
    stacked, has = stack_views(batch, [View.parse("omni"), View.parse("audio")])
    assert len(stacked["text_field"]) == 2 * len(enc) and has.shape == (2, len(enc))
    for bad in ("video", "image[title]", "text[nope]"):
        with pytest.raises(ValueError):
            View.parse(bad)
    with pytest.raises(ValueError, match="text side"):
        parse_patterns(["image->omni"], "text", "item")
    assert [str(p) for p in parse_patterns([], "item", "item")] == ["omni->omni"]


def test_a_pattern_without_its_modality_contributes_no_loss(enc, tiny_config):
    from embedding.losses import InfoNCELoss, MatryoshkaLoss

    torch.manual_seed(0)
    model = OmniEmbeddingModel(tiny_config(enc)).eval()
    no_audio = enc.without("audio")
    rows = np.arange(len(enc))
    b = Batch("i2i", "i2i", collate(enc, rows), collate(no_audio, rows[::-1].copy()),
              torch.as_tensor(np.stack([enc.item_ids, enc.item_ids[::-1]], 1)), torch.zeros(len(enc), len(enc),
                                                                                          dtype=torch.bool))
    omni, audio = Pattern.parse("omni->omni"), Pattern.parse("omni->audio")
    keys = ["i2i", "i2i:omni->audio", "i2i:omni->image"]
    loss_fn = MatryoshkaLoss(InfoNCELoss(None, keys=keys, temperature=0.1), model.config.all_dims)
    with torch.no_grad():
        alone = pattern_loss(loss_fn, b, embed_patterns(model, b, [omni]), None)
        with_audio = pattern_loss(loss_fn, b, embed_patterns(model, b, [omni, audio]), None)
        image = pattern_loss(loss_fn, b, embed_patterns(model, b, [omni, Pattern.parse("omni->image")]), None)
    assert with_audio == pytest.approx(alone.item(), rel=1e-6)        # no target has audio: no loss from it
    assert image != pytest.approx(alone.item(), rel=1e-3)              # targets have images: it counts


def test_hard_negatives_join_only_the_omni_pattern(enc, tiny_config):
    """A batch with mined negatives: a pattern valid on every row (text->text) scores the in-batch targets only,
    and the omni pattern with the negatives changes (found by mICL on top of hard negatives)."""
    from embedding.losses import InfoNCELoss, MatryoshkaLoss

    torch.manual_seed(0)
    model = OmniEmbeddingModel(tiny_config(enc)).eval()
    rows, m = np.arange(len(enc)), 3
    ids = torch.as_tensor(np.stack([enc.item_ids, enc.item_ids[::-1]], 1))
    plain = Batch("i2i", "i2i", collate(enc, rows), collate(enc, rows[::-1].copy()), ids,
                  torch.zeros(len(enc), len(enc), dtype=torch.bool))
    negatives = Batch("i2i", "i2i", plain.query, plain.target, ids,
                      torch.zeros(len(enc), len(enc) + m, dtype=torch.bool), collate(enc, rows[:m].copy()),
                      torch.as_tensor(enc.item_ids[:m]))
    text = Pattern.parse("text->text")
    keys = ["i2i", "i2i:text->text"]
    loss_fn = MatryoshkaLoss(InfoNCELoss(None, keys=keys, temperature=0.1), model.config.all_dims)
    with torch.no_grad():
        text_only = [pattern_loss(loss_fn, b, embed_patterns(model, b, [text]), b.positives)
                     for b in (plain, negatives)]
        omni = [pattern_loss(loss_fn, b, embed_patterns(model, b, [Pattern.parse("omni->omni")]), b.positives)
                for b in (plain, negatives)]
    assert text_only[1] == pytest.approx(text_only[0].item(), rel=1e-6)
    assert omni[1] > omni[0]


def test_patterns_train_and_an_impossible_one_changes_nothing(pair_world, tmp_path):
    ds, enc, texts = pair_world.ds, pair_world.enc, pair_world.encode_texts  # text-only items
    # no dropout of any kind: the stacked views draw it from the generator in another order
    model = tiny_cfg().model.model_copy(update={"field_drop_prob": 0.0, "dropout": 0.0})
    base = train_embedding(ds, enc, tiny_cfg(steps=3, model=model, precision="fp32"), tmp_path / "a", "cpu", texts)
    same = train_embedding(ds, enc, tiny_cfg(steps=3, model=model, precision="fp32",
                                             patterns={"i2i": ["omni->omni", "image->image"]}),
                           tmp_path / "b", "cpu", texts)
    a, b = _weights(base.model_dir), _weights(same.model_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    other = train_embedding(ds, enc, tiny_cfg(steps=3, model=model, precision="fp32",
                                              patterns={"i2i": ["omni->omni", "text[title]->text"]}),
                            tmp_path / "c", "cpu", texts)
    c = _weights(other.model_dir)
    assert not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)
    assert "temperature/i2i" in other.metrics and "temperature/i2i:text[title]->text" in other.metrics
    no_omni = train_embedding(ds, enc, tiny_cfg(steps=2, model=model, precision="fp32",
                                                patterns={"i2i": ["text[title]->text"]}), tmp_path / "d", "cpu", texts)
    assert "temperature/i2i" not in no_omni.metrics and "temperature/i2i:text[title]->text" in no_omni.metrics
    with pytest.raises(ValueError, match="patterns name datasets"):
        tiny_cfg(patterns={"nope": ["omni->omni"]})


def test_pattern_weights_and_micl(enc, tiny_config):
    from embedding.losses import InfoNCELoss, MatryoshkaLoss

    p = Pattern.parse("image->text*0.5")
    assert p.weight == 0.5 and str(p) == "image->text"
    for bad in ("image->text*0", "image->text*x", "image"):
        with pytest.raises(ValueError):
            Pattern.parse(bad)
    cfg = tiny_cfg(micl_weight=0.25, patterns={"i2i": ["omni->omni", "image->image*2"]})
    assert cfg.patterns_of("i2i", "item", "item") == ["omni->omni", "image->image*2", "text->text*0.25",
                                                      "audio->audio*0.25"]    # declared weights win
    assert cfg.patterns_of("q2i", "text", "item") == ["omni->omni"]           # mICL: item->item datasets only
    torch.manual_seed(0)
    model = OmniEmbeddingModel(tiny_config(enc)).eval()
    rows = np.arange(len(enc))
    b = Batch("i2i", "i2i", collate(enc, rows), collate(enc, rows[::-1].copy()),
              torch.as_tensor(np.stack([enc.item_ids, enc.item_ids[::-1]], 1)),
              torch.zeros(len(enc), len(enc), dtype=torch.bool))
    keys = ["i2i", "i2i:image->image"]
    loss_fn = MatryoshkaLoss(InfoNCELoss(None, keys=keys, temperature=0.1), model.config.all_dims)
    pats = parse_patterns(["omni->omni", "image->image*3"], "item", "item")
    with torch.no_grad():
        both = pattern_loss(loss_fn, b, embed_patterns(model, b, pats), None)
        omni = pattern_loss(loss_fn, b, embed_patterns(model, b, pats[:1]), None)
        image = pattern_loss(loss_fn, b, embed_patterns(model, b, pats[1:]), None)
    assert both == pytest.approx(((omni + 3 * image) / 4).item(), rel=1e-5)
