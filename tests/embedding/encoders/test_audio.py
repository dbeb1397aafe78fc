"""Audio: chunking (repeat and wrap padding), the log-mel front end, the trainable conv encoder."""

from __future__ import annotations

import numpy as np
import torch

from embedding.encoders import ConvAudioEncoder, LogMel
from embedding.encoders.audio import chunk_waveform, mel_filterbank


def test_chunking_repeat_pads_and_spaces_chunks():
    short = np.arange(3, dtype=np.float32) + 1
    c = chunk_waveform(short, 8, 4)
    assert c.shape == (1, 8) and c[0].tolist() == [1, 2, 3, 1, 2, 3, 1, 2]
    long = np.arange(100, dtype=np.float32)
    c = chunk_waveform(long, 10, 4)
    assert c.shape == (4, 10) and c[0, 0] == 0 and c[-1, 0] == 90
    c = chunk_waveform(np.arange(25, dtype=np.float32), 10, 8)  # tail of 5 >= quarter: wrap-padded
    assert c.shape == (3, 10) and c[2].tolist() == [20, 21, 22, 23, 24, 0, 1, 2, 3, 4]


def test_logmel_peaks_at_tone_and_conv_encoder_trains():
    fb = mel_filterbank(257, 0.0, 8000.0, 40, 16000)
    assert fb.shape == (257, 40) and float(fb.min()) >= 0 and (fb.sum(0) > 0).all()
    lm = LogMel(16000, 512, 160, 40)
    t = torch.arange(16000) / 16000
    low, high = lm(torch.stack([torch.sin(2 * np.pi * 300 * t), torch.sin(2 * np.pi * 3000 * t)]))
    assert low.shape == (40, 100)
    assert low.mean(1).argmax() < high.mean(1).argmax()
    enc = ConvAudioEncoder(n_mels=40, out_dim=24)
    x = torch.randn(3, 40, 100)
    y = enc(x)
    assert y.shape == (3, 24)
    y.sum().backward()
    assert enc.proj.weight.grad is not None
