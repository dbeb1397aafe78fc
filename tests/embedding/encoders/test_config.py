"""EncoderConfig: unknown keys and fields are errors naming them; defaults of the shipped encoders."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from embedding.encoders import EncoderConfig


def test_config_rejects_unknown_keys_and_fields():
    with pytest.raises(ValidationError, match="modle"):
        EncoderConfig(text={"modle": "x"})
    with pytest.raises(ValidationError, match="titel"):
        EncoderConfig(text={"field_caps": {"titel": 4}})
    cfg = EncoderConfig()
    assert cfg.text.model == "minilm" and cfg.image.model == "efficientnet-lite0" and cfg.audio.model == "logmel"
    assert cfg.text.total_cap == 16 + 32 + 16 + 8 + 16 + 16 + 8
    assert cfg.audio.n_frames == 100
    assert cfg.num_threads == 1 and EncoderConfig(num_threads=None).num_threads is None  # None: every core
    with pytest.raises(ValidationError, match="num_threads"):
        EncoderConfig(num_threads=0)
