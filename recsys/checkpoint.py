"""Checkpoint and resume for training loops: one directory per checkpoint, written atomically, loaded safely.

    <ckpt_dir>/  model files (the model's own `save_pretrained`), state.pt (optimizer and loop state), meta.json

`meta` describes what produced the checkpoint (the training config that matters for resuming, an input
fingerprint); resuming with different meta is refused with the differing keys named, so a rerun never continues
a run of another config. `state.pt` holds tensors and plain Python containers only and loads with
`weights_only=True`: a planted checkpoint cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import torch

from recsys.io import atomic_directory

STATE_NAME = "state.pt"
META_NAME = "meta.json"


class SavesPretrained(Protocol):
    def save_pretrained(self, directory: Path) -> None: ...


class CheckpointMismatch(ValueError):
    """The checkpoint on disk was written by another config or from other inputs."""


def save_checkpoint(ckpt_dir: str | Path, model: SavesPretrained | None, state: dict[str, Any],
                    meta: dict[str, Any]) -> None:
    with atomic_directory(ckpt_dir) as tmp:
        if model is not None:
            model.save_pretrained(tmp)
        torch.save(state, tmp / STATE_NAME)
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def load_checkpoint(ckpt_dir: str | Path, meta: dict[str, Any],
                    map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The saved state, or None when there is no checkpoint; CheckpointMismatch when `meta` differs."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / STATE_NAME).is_file() or not (ckpt_dir / META_NAME).is_file():
        return None
    saved = json.loads((ckpt_dir / META_NAME).read_text())
    current = json.loads(json.dumps(meta, sort_keys=True, default=str))
    if saved != current:
        keys = sorted(k for k in {*saved, *current} if saved.get(k) != current.get(k))
        raise CheckpointMismatch(f"checkpoint {ckpt_dir} was written with different settings (keys {keys}); "
                                 "rerun with --force for that stage to train from scratch, or restore the settings")
    return torch.load(ckpt_dir / STATE_NAME, map_location=map_location, weights_only=True)
