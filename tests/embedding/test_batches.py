"""Model batches from encoder outputs: the rows asked for, padding columns no row of the batch uses trimmed away."""

from __future__ import annotations

import numpy as np
import torch

from embedding.batches import collate, collate_texts


def test_collate_takes_rows_and_trims_unused_padding(make_encoded):
    enc = make_encoded(6, seed=7, lt=9, frames=3)
    enc.text.field[4] = [0, 1, 3, -1, -1, -1, -1, -1, -1]  # the batch's longest text: 3 tokens
    enc.text.field[1] = [2, -1, -1, -1, -1, -1, -1, -1, -1]
    enc.image_mask[[4, 1]] = [[True, False, False], [False, True, False]]  # no frame 2 in the batch
    rows = np.array([4, 1])
    batch = collate(enc, rows, "cpu")
    assert set(batch) == {"text_tokens", "text_field", "image", "image_mask", "audio", "audio_mask", "pre_clip"}
    assert batch["text_tokens"].shape == (2, 3, enc.text.tokens.shape[-1])
    assert batch["text_tokens"].dtype == torch.float32 and batch["text_field"].dtype == torch.int64
    np.testing.assert_array_equal(batch["text_field"].numpy(), enc.text.field[rows, :3])
    np.testing.assert_allclose(batch["text_tokens"].numpy(), enc.text.tokens[rows, :3].astype(np.float32))
    assert batch["image_mask"].tolist() == [[True, False], [False, True]] and batch["image"].shape[1] == 2
    np.testing.assert_allclose(batch["image"].numpy(), enc.image[rows, :2].astype(np.float32))
    assert batch["audio_mask"].any(1).tolist() == enc.audio_mask[rows].any(1).tolist()
    np.testing.assert_array_equal(np.isnan(batch["pre_clip"].numpy()), np.isnan(enc.precomputed["clip"][rows]))
    # a text-only batch of items without text keeps one (padding) column
    enc.text.field[0] = -1
    empty = collate_texts(enc.text, np.array([0]), "cpu")
    assert empty["text_field"].tolist() == [[-1]] and set(empty) == {"text_tokens", "text_field"}
