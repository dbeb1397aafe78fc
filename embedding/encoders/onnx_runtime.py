"""ONNX Runtime path for the frozen encoders: export a torch module once, cache the graph on disk, run it on CPU.

Why: on CPU, ONNX Runtime runs MiniLM and EfficientNet-Lite0 about twice as fast as torch eager with the same
outputs (BENCHMARKS.md, "Encoder runtime"). The encoders keep tokenisation and image decoding in Python and hand
tensors to the exported graph.

Exports are kept as ``<export_dir>/<name>-<key>.onnx`` (+ a ``.json`` saying what produced it), where the key hashes
the encoder identity, a digest of the module's weights, the input names / dtypes / shapes (dynamic axes by name),
the output names, the opset, the torch version and the quantisation: a rerun with another config never reuses a
graph it did not export. Files are written to a temporary path and renamed (recsys.io), so a crash leaves no half
graph. Sessions use `recsys.runtime.resolve_threads` semantics for their intra-op threads (one inter-op thread), so
they never run more threads than the encoder config allows.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from embedding.encoders.cache import identity_hash
from recsys.io import atomic_file, write_text
from recsys.runtime import resolve_threads

OPSET = 17
"""ONNX opset of the exports (17 has LayerNormalization, which ONNX Runtime fuses)."""
INT8 = "dynamic-int8-per-channel"
"""The one quantisation offered: weights int8 per output channel, activations quantised on the fly (MatMul only)."""


def default_export_dir() -> Path:
    """$RECSYS_ONNX_CACHE, else ~/.cache/sail-recsys/onnx (exports are keyed, so every run may share them)."""
    env = os.environ.get("RECSYS_ONNX_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sail-recsys" / "onnx"


def weights_digest(module: torch.nn.Module) -> str:
    """sha1 over the names, dtypes, shapes and bytes of every tensor in the state dict (a local model directory
    can be overwritten with other weights under the same path)."""
    h = hashlib.sha1()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        # flatten: a channels_last weight with unit dims counts as contiguous but keeps its strides
        h.update(t.flatten().view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()


class GraphModule(torch.nn.Module):
    """The part of an encoder that is exported: `fn(*inputs)` with the module holding its weights registered."""

    def __init__(self, fn: Callable[..., torch.Tensor], owner: torch.nn.Module):
        super().__init__()
        self.owner = owner
        self._fn = fn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self._fn(*inputs)


def graph_spec(example: dict[str, torch.Tensor], outputs: list[str],
               dynamic_axes: dict[str, dict[int, str]]) -> dict:
    """Input names, dtypes and shapes (dynamic axes by name) and output names: what a graph takes and gives."""
    inputs = []
    for name, t in example.items():
        dyn = dynamic_axes.get(name, {})
        inputs.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."),
                       "shape": [dyn.get(i, int(s)) for i, s in enumerate(t.shape)]})
    return {"inputs": inputs, "outputs": [{"name": n, "dynamic": dynamic_axes.get(n, {})} for n in outputs]}


def export_key(identity: dict, digest: str, spec: dict, opset: int, quantize: str | None) -> dict:
    """Everything that determines the exported graph; its hash names the file."""
    key = {"identity": identity, "weights": digest, "spec": spec, "opset": opset, "torch": torch.__version__,
           "quantize": quantize}
    if quantize:
        import onnxruntime

        key["onnxruntime"] = onnxruntime.__version__
    return key


def exported_graph(module: torch.nn.Module, example: dict[str, torch.Tensor], outputs: list[str],
                   dynamic_axes: dict[str, dict[int, str]], identity: dict, name: str, export_dir: Path,
                   quantize: str | None = None, opset: int = OPSET) -> Path:
    """Path of the ONNX graph of `module` for this identity and spec, exporting (and quantising) it if absent.

    `example` must be representative (batch >= 2, padding present for text) because the exporter traces it. The
    float graph a quantised one is made from is kept too (the "onnx" runtime uses it).
    """
    spec = graph_spec(example, outputs, dynamic_axes)
    digest = weights_digest(module)

    def path_of(q: str | None) -> tuple[Path, dict]:
        key = export_key(identity, digest, spec, opset, q)
        return Path(export_dir) / f"{name}-{identity_hash(key)}.onnx", key

    source, key = path_of(None)
    if not source.is_file():
        _export(module, example, outputs, dynamic_axes, source, opset)
        write_text(source.with_suffix(".json"), json.dumps(key, indent=2, sort_keys=True, default=str))
    if not quantize:
        return source
    path, key = path_of(quantize)
    if not path.is_file():
        _quantize(source, path, quantize)
        write_text(path.with_suffix(".json"), json.dumps(key, indent=2, sort_keys=True, default=str))
    return path


def _export(module: torch.nn.Module, example: dict[str, torch.Tensor], outputs: list[str],
            dynamic_axes: dict[str, dict[int, str]], path: Path, opset: int) -> None:
    # The TorchScript exporter needs no extra package (the dynamo one needs onnxscript); its deprecation and
    # tracer warnings concern shape-dependent Python branches, which the equivalence tests cover.
    with atomic_file(path) as tmp, torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), tuple(example.values()), str(tmp), input_names=list(example),
                          output_names=outputs, dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)


def _from_onnxruntime(record: logging.LogRecord) -> bool:
    return f"onnxruntime{os.sep}quantization" not in record.pathname


def _quantize(source: Path, path: Path, quantize: str) -> None:
    if quantize != INT8:
        raise ValueError(f"unknown quantisation '{quantize}' (only '{INT8}')")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_from_onnxruntime)  # the quantiser logs a pre-processing hint to the root logger on every call
    try:
        with atomic_file(path) as tmp:
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
    finally:
        root.removeFilter(_from_onnxruntime)


def open_session(path: Path, num_threads: int | None):
    """A CPU InferenceSession with `resolve_threads(num_threads)` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = resolve_threads(num_threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxGraph:
    """An exported graph run by ONNX Runtime; its session is reopened when the thread count asked for changes
    (encoders are reused across calls whose `num_threads` may differ)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._session = None
        self._threads: int | None = None

    def run(self, inputs: dict[str, np.ndarray], num_threads: int | None) -> list[np.ndarray]:
        n = resolve_threads(num_threads)
        if self._session is None or n != self._threads:
            self._session, self._threads = open_session(self.path, n), n
        return self._session.run(None, inputs)
