"""The ONNX Runtime path of the encoders: same features as torch (shipped weights), exports keyed and reused,
sessions with the configured threads, the runtime in the feature-cache identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from embedding.encoders import EncoderConfig, clear_encoder_cache, encode_items
from embedding.encoders import onnx_runtime as ox
from embedding.encoders.config import ImageEncoderConfig, TextEncoderConfig
from embedding.encoders.image import ImageEncoder, load_image
from embedding.encoders.text import TextEncoder
from recsys.errors import ConfigError
from recsys.runtime import available_cores

CPU = torch.device("cpu")
TEXTS = ["Toy Story (1995)", "Adventure, Animation, Children, Comedy, Fantasy", "Heat", "x",
         "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1964)"]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def test_minilm_onnx_matches_torch_per_token_and_int8_costs_little(export_dir):
    cfg = TextEncoderConfig(batch_size=2)  # several batches: with and without padding, a batch of one
    ref = TextEncoder(cfg, CPU).encode(TEXTS, 16)
    onnx = TextEncoder(cfg.model_copy(update={"runtime": "onnx"}), CPU, export_dir)
    got = onnx.encode(TEXTS, 16)
    assert onnx.graph is not None and onnx.calls == 3
    for a, b in zip(ref, got):
        assert a.shape == b.shape
        assert _cos(a, b).min() >= 0.999 and _cos(a.mean(0), b.mean(0)) >= 0.999
    int8 = TextEncoder(cfg.model_copy(update={"runtime": "onnx-int8"}), CPU, export_dir).encode(TEXTS, 16)
    pooled = np.array([_cos(a.mean(0), b.mean(0)) for a, b in zip(ref, int8)])
    assert pooled.min() >= 0.97  # measured 0.99 mean on MovieLens (BENCHMARKS.md): a real but small cost
    assert min(_cos(a, b).min() for a, b in zip(ref, int8)) < 0.9999  # it is quantised, not the float graph
    assert len(list(export_dir.glob("text-*.onnx"))) == 2  # the float graph is shared by onnx and onnx-int8


def test_efficientnet_onnx_matches_torch_on_posters(export_dir, movielens_dir):
    cfg = ImageEncoderConfig()
    posters = sorted((movielens_dir / "posters").glob("*.jpg"))[:3]
    images = np.stack([load_image(p.read_bytes(), ImageEncoder(cfg, CPU).input_size) for p in posters])
    ref = ImageEncoder(cfg, CPU).encode(images)
    onnx = ImageEncoder(cfg.model_copy(update={"runtime": "onnx"}), CPU, export_dir)
    got = onnx.encode(images[:2])  # another batch size than the traced example's
    got = np.concatenate([got, onnx.encode(images[2:])])
    assert got.shape == ref.shape == (3, 16, 320)
    assert _cos(ref.reshape(3, -1), got.reshape(3, -1)).min() >= 0.999
    assert _cos(ref, got).min() >= 0.999  # every patch
    # odd sizes: other 'same' paddings, fixed for the export (head feature: every conv of the trunk)
    odd = ImageEncoderConfig(image_size=(97, 65), feature="head")
    images = np.random.default_rng(0).integers(0, 256, (2, 97, 65, 3), dtype=np.uint8)
    ref = ImageEncoder(odd, CPU).encode(images)
    got = ImageEncoder(odd.model_copy(update={"runtime": "onnx"}), CPU, export_dir).encode(images)
    assert _cos(ref, got).min() >= 0.999


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3)


def _export(tmp: Path, module: torch.nn.Module, shape=(2, 4), identity=None, opset=ox.OPSET) -> Path:
    example = {"x": torch.zeros(shape)}
    return ox.exported_graph(module, example, ["y"], {"x": {0: "batch"}, "y": {0: "batch"}},
                             identity or {"model": "lin"}, "lin", tmp, opset=opset)


def test_exports_are_reused_and_keyed_by_identity_weights_shape_and_opset(tmp_path, monkeypatch):
    calls = []
    real = ox._export
    monkeypatch.setattr(ox, "_export", lambda *a: (calls.append(a[-2]), real(*a)))
    first = _export(tmp_path, _linear(0))
    assert _export(tmp_path, _linear(0)) == first and len(calls) == 1  # rerun: no second export
    others = {_export(tmp_path, _linear(1)),  # other weights under the same identity
              _export(tmp_path, _linear(0), shape=(2, 4, 4)),  # other static input shape
              _export(tmp_path, _linear(0), identity={"model": "other"}),
              _export(tmp_path, _linear(0), opset=16)}
    assert len(others) == 4 and first not in others and len(calls) == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".onnx") == sorted(p.name for p in {first,
                                                                                                        *others})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)  # dynamic batch: 5, traced with 2
    y = ox.OnnxGraph(first).run({"x": x}, 1)[0]
    with torch.no_grad():
        np.testing.assert_allclose(y, _linear(0)(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_sessions_use_resolve_threads_and_reopen_when_the_count_changes(tmp_path):
    graph = ox.OnnxGraph(_export(tmp_path, _linear(0)))
    x = {"x": np.zeros((1, 4), np.float32)}
    graph.run(x, None)
    assert graph._session.get_session_options().intra_op_num_threads == available_cores()
    graph.run(x, 1)
    opts = graph._session.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    with pytest.raises(ValueError, match="num_threads"):
        graph.run(x, 0)


def test_runtime_is_in_the_cache_identity_and_onnx_items_match_torch(tmp_path, tiny_models, tiny_cfg, make_dataset,
                                                                      monkeypatch):
    monkeypatch.setenv("RECSYS_ONNX_CACHE", str(tmp_path / "exports"))
    ds = make_dataset(tmp_path)
    off = {"audio": {"enabled": False}}
    torch_cfg = tiny_cfg(tiny_models, text={"runtime": "torch"}, image={"runtime": "torch"}, **off)
    onnx_cfg = tiny_cfg(tiny_models, **off)  # runtime "auto": onnx on CPU
    ref = encode_items(ds, torch_cfg, tmp_path / "cache", device="cpu")
    got = encode_items(ds, onnx_cfg, tmp_path / "cache", device="cpu")
    assert "runtime" not in ref.info["identity"]["text"]  # caches written before the option stay valid
    assert got.info["identity"]["text"]["runtime"] == got.info["identity"]["image"]["runtime"] == "onnx"
    assert got.info["encoded"] == {"text": 6, "image": 4}  # its own cache: nothing reused from torch's
    # the exports live beside the run's encoder cache, not in the user-wide default
    assert {p.name.split("-")[0] for p in (tmp_path / "cache" / "onnx").glob("*.onnx")} == {"text", "image"}
    assert not list((tmp_path / "exports").glob("*.onnx"))
    valid = ref.text.field >= 0
    np.testing.assert_array_equal(valid, got.text.field >= 0)
    a, b = ref.text.tokens[valid].astype(np.float32), got.text.tokens[valid].astype(np.float32)
    assert _cos(a, b).min() >= 0.999
    m = ref.image_mask
    assert _cos(ref.image[m].astype(np.float32), got.image[m].astype(np.float32)).min() >= 0.999
    clear_encoder_cache()


def test_onnx_runtime_refuses_a_gpu_device():
    with pytest.raises(ConfigError, match="runtime 'onnx' runs on CPU"):
        TextEncoder(TextEncoderConfig(runtime="onnx"), torch.device("cuda")).load()
    with pytest.raises(ConfigError, match="runtime 'onnx' runs on CPU"):
        ImageEncoder(ImageEncoderConfig(runtime="onnx"), torch.device("cuda")).load()
    assert EncoderConfig().text.runtime == EncoderConfig().image.runtime == "auto"
    for cls, sub in ((TextEncoder, TextEncoderConfig()), (ImageEncoder, ImageEncoderConfig())):
        assert cls(sub, torch.device("cpu")).cfg.runtime == "onnx"
        assert cls(sub, torch.device("cuda")).cfg.runtime == "torch"
