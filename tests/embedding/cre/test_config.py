"""CREConfig: defaults, validation naming the key, the derived switches the loop reads."""

from __future__ import annotations

import pytest

from embedding.cre import CREConfig


def test_config_validation():
    c = CREConfig()
    assert (c.seq2item_steps, c.id2item_steps, c.history_len) == (600, 600, 10)
    assert c.sequence_mix == {"vanilla": 0.5, "filtered": 0.5}
    with pytest.raises(ValueError, match="zigzag"):
        CREConfig(sequence_mix={"zigzag": 1.0})
    with pytest.raises(ValueError, match="seq2item_stpes"):
        CREConfig(seq2item_stpes=3)
    with pytest.raises(ValueError, match="min_history"):
        CREConfig(min_history=11)
    with pytest.raises(ValueError, match="min_lr"):
        CREConfig(lr=1e-4, min_lr=1e-3)


def test_derived_switches_and_resume_meta():
    c = CREConfig()
    assert c.kinds == ["vanilla", "filtered"] and c.uses_sequences and not c.uses_aux_i2i and not c.uses_bank
    assert CREConfig(sequence_mix={"vanilla": 1.0, "filtered": 0.0}).kinds == ["vanilla"]
    assert not CREConfig(seq2item_steps=0, id2item_seq2item_weight=0).uses_sequences
    assert CREConfig(aux_i2i_weight=0.2).uses_aux_i2i
    assert not CREConfig(aux_i2i_weight=0.2, id2item_steps=0).uses_aux_i2i
    assert CREConfig(finetune_fusion=True).uses_bank and not CREConfig(finetune_fusion=True, history_grad=10).uses_bank
    # what only changes how a run is observed or how fast it runs does not block a resume
    assert CREConfig(num_threads=None, log_every=1).resume_meta() == c.resume_meta()
    assert CREConfig(batch_size=8).resume_meta() != c.resume_meta()
