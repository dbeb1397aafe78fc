"""Input fingerprints of training runs: sensitive to what a run computes from, blind to cache hits."""

from __future__ import annotations

import numpy as np

from embedding.fingerprint import encoder_signature, input_fingerprint


def test_fingerprint_follows_values_dtypes_shapes_files_and_text(tmp_path):
    a = np.arange(6, dtype=np.int64)
    (tmp_path / "w").write_bytes(b"weights")
    base = input_fingerprint(a, (2, 3), files=(tmp_path / "w",), text="enc")
    assert base == input_fingerprint(a.copy(), (2, 3), files=(tmp_path / "w",), text="enc")
    changed = [input_fingerprint(a + 1, (2, 3), files=(tmp_path / "w",), text="enc"),
               input_fingerprint(a.astype(np.int32), (2, 3), files=(tmp_path / "w",), text="enc"),
               input_fingerprint(a.reshape(2, 3), (2, 3), files=(tmp_path / "w",), text="enc"),
               input_fingerprint(a, (3, 3), files=(tmp_path / "w",), text="enc"),
               input_fingerprint(a, (2, 3), text="enc"),
               input_fingerprint(a, (2, 3), files=(tmp_path / "w",), text="other")]
    assert len({base, *changed}) == 7 and len(base) == 16


def test_encoder_signature_ignores_how_much_came_from_the_cache():
    first = {"identity": {"text": {"model": "minilm"}}, "dims": {"Lt": 9}, "audio_kind": "logmel",
             "encoded": {"text": 12}, "cached": {"text": 0}, "device": "cpu"}
    rerun = {**first, "encoded": {"text": 0}, "cached": {"text": 12}, "device": "cuda"}
    assert encoder_signature(first) == encoder_signature(rerun)
    assert encoder_signature(first) != encoder_signature({**first, "dims": {"Lt": 10}})
    assert encoder_signature(first) != encoder_signature({**first, "identity": {"text": {"model": "bert"}}})
