"""The fast inference path of the log-mel audio encoder computes the same function as the layer it replaced.

The old formulation (before issue 10: the conv stack run as modules, nn.MaxPool2d, the whole batch at once) is
written inline here; its checkpoints must load into the new encoder and give the same outputs (atol 1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from embedding.batches import collate
from embedding.encoders.audio import ConvAudioEncoder, max_pool_2x2
from embedding.infer import embed_items
from embedding.model import OmniEmbeddingModel


class OldConvAudioEncoder(nn.Module):
    """ConvAudioEncoder as it was: every block through its modules, in eval as in training."""

    def __init__(self, n_mels: int, out_dim: int, channels: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_mels)
        layers, c_in = [], 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.GELU(),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * c_in, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x.float()).unsqueeze(1)
        x = self.conv(x).mean(dim=2)
        x = torch.cat([x.mean(-1), x.amax(-1)], dim=-1)
        return self.proj(self.dropout(x))


def _randomise_batchnorms(module: nn.Module, seed: int) -> None:
    """Running statistics and affine parameters as after training (fresh ones would make folding trivial)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.3)
            m.weight.data.copy_(1 + 0.3 * torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))


@pytest.mark.parametrize("h, w", [(1, 1), (1, 5), (4, 7), (5, 6), (7, 3), (8, 8)])
def test_max_pool_2x2_equals_ceil_mode_max_pool(h, w):
    x = torch.randn(3, 2, h, w)
    torch.testing.assert_close(max_pool_2x2(x), F.max_pool2d(x, 2, ceil_mode=True), rtol=0, atol=0)


@pytest.mark.parametrize("n_mels, frames, channels, group_elements",
                         [(64, 100, (8, 16, 32, 64), 2**21),  # the demo encoder: 40 chunks a group
                          (21, 37, (4, 8, 16), 3 * 4 * 21 * 37)])  # odd sizes; groups of 3 chunks, the last of 1
def test_old_checkpoint_loads_and_gives_the_same_outputs(n_mels, frames, channels, group_elements, monkeypatch):
    torch.manual_seed(0)
    old = OldConvAudioEncoder(n_mels, 24, channels)
    _randomise_batchnorms(old, seed=1)
    new = ConvAudioEncoder(n_mels, 24, channels, dropout=0.0)
    new.load_state_dict(old.state_dict())  # strict: the state-dict keys are unchanged
    monkeypatch.setattr(ConvAudioEncoder, "eval_elements", group_elements)
    x = torch.randn(43, n_mels, frames) * 3 - 6  # log-mel-like values
    old.eval(), new.eval()
    with torch.inference_mode():
        torch.testing.assert_close(new(x), old(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(new(x[:1]), old(x[:1]), rtol=0, atol=1e-5)
    old.train(), new.train()  # training keeps batch statistics and the module path: the same, running stats too
    torch.testing.assert_close(new(x), old(x), rtol=0, atol=0)
    for a, b in zip(new.state_dict().values(), old.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fusion_model_embeddings_unchanged_with_logmel_audio(make_encoded, tiny_config, monkeypatch):
    """embed_items (inference mode, the encoder's eval path in groups) == the model with the old encoder."""
    enc = make_encoded(n=23, seed=3, audio=False)
    rng = np.random.default_rng(4)
    enc.audio = rng.normal(-6.0, 3.0, size=(len(enc), 3, 16, 27)).astype(np.float16)
    enc.audio_mask = rng.random((len(enc), 3)) < 0.6
    enc.audio_kind = "logmel"
    torch.manual_seed(0)
    model = OmniEmbeddingModel(tiny_config(enc, audio_channels=[4, 8, 8])).eval()
    torch.nn.init.normal_(model.head.weight, std=0.02)  # the fusion path (audio token included) reaches the output
    _randomise_batchnorms(model.audio.encoder, seed=5)
    monkeypatch.setattr(ConvAudioEncoder, "eval_elements", 2 * 4 * 16 * 27)  # groups of 2 chunks
    fast = embed_items(model, enc, batch_size=7, device="cpu")

    old = OldConvAudioEncoder(16, model.config.hidden, (4, 8, 8))
    old.load_state_dict(model.audio.encoder.state_dict())
    monkeypatch.setattr(model.audio, "encoder", old.eval())
    with torch.no_grad():
        ref = model(collate(enc, np.arange(len(enc)), "cpu")).embedding.numpy()
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-5)
    assert enc.audio_mask.any(1).sum() > 10  # most items carry audio: the comparison covers the audio token
