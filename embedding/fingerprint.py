"""A short hash of what a training run depends on besides its config: data, teachers, base weights, encoders.

It is the input half of a checkpoint's meta (recsys.checkpoint): a run resumes only a checkpoint written from the
same inputs, and a finished run is reused only when its inputs are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def encoder_signature(info: dict) -> str:
    """What produced a set of encoder outputs (EncodedItems.info: encoder identities, dims, audio kind), not how
    much of it came from the cache this time: a rerun that hits the cache has the same signature."""
    return json.dumps({k: info.get(k) for k in ("identity", "dims", "audio_kind")}, sort_keys=True, default=str)


def input_fingerprint(*arrays: object, files: tuple[Path, ...] = (), text: str = "") -> str:
    """Hash of the arrays' dtypes, shapes and bytes, the files' bytes and `text` (16 hex digits)."""
    h = hashlib.sha256(text.encode())
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


__all__ = ["encoder_signature", "input_fingerprint"]
