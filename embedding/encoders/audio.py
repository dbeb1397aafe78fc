"""Audio: decoding, fixed-length chunking, a log-mel front end in plain torch, and encoders.

- `audio_kind = "logmel"` (default): each clip becomes K chunks of `chunk_seconds` (clips shorter than one chunk are
  repeated to fill it, as SAIL repeat-pads short clips; the last partial chunk of a longer clip is filled by wrapping
  around to the clip start; clips with more than `max_chunks` chunks keep evenly spaced chunks). Each chunk is a
  log-mel spectrogram [n_mels, T] (T = chunk_samples // hop_length), which `ConvAudioEncoder` maps to a vector; the
  fusion model fine-tunes that encoder.
- `audio_kind = "embedding"`: a frozen Hugging Face audio checkpoint (AST, CLAP, or any encoder returning
  last_hidden_state) from a local directory gives one embedding [Da] per chunk.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from embedding.encoders.config import AudioEncoderConfig
from embedding.encoders.text import quiet_hf_loading
from recsys.errors import ConfigError

OK, MISSING, UNREADABLE, EMPTY = 0, 1, 2, 3
STATUS_TEXT = {MISSING: "missing file", UNREADABLE: "unreadable or corrupt audio", EMPTY: "empty audio"}


# --------------------------------------------------------------------------------------------------- decoding
def load_audio(data: bytes, sample_rate: int) -> np.ndarray:
    """Decode (WAV/FLAC/OGG, and MP3 where libsndfile supports it) to mono float32 at `sample_rate`."""
    import soundfile as sf

    wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != sample_rate and len(wave):
        from scipy.signal import resample_poly

        g = math.gcd(int(sr), int(sample_rate))
        wave = resample_poly(wave, sample_rate // g, int(sr) // g).astype(np.float32)
    if not np.all(np.isfinite(wave)):
        raise ValueError("non-finite samples")
    return wave.astype(np.float32, copy=False)


def chunk_waveform(wave: np.ndarray, chunk_samples: int, max_chunks: int) -> np.ndarray:
    """[K, chunk_samples]: repeat-pad short clips, wrap-pad the last partial chunk, keep <= max_chunks evenly spaced."""
    n = len(wave)
    if n == 0:
        raise ValueError("empty clip")
    k = max(1, math.ceil(n / chunk_samples))
    if n % chunk_samples and n > chunk_samples and (n % chunk_samples) < chunk_samples // 4:
        k -= 1  # a tail under a quarter chunk is dropped rather than mostly repeated
    total = k * chunk_samples
    reps = math.ceil(total / n)
    padded = np.tile(wave, reps)[:total] if reps > 1 else wave[:total]
    chunks = padded.reshape(k, chunk_samples)
    if k > max_chunks:
        chunks = chunks[np.linspace(0, k - 1, max_chunks).round().astype(int)]
    return chunks


# ---------------------------------------------------------------------------------------------------- log-mel
def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters [n_freqs, n_mels] (unnormalised, as torchaudio.functional.melscale_fbanks)."""
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    m_pts = np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    f_pts = _mel_to_hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    return torch.from_numpy(fb.astype(np.float32))


class LogMel(nn.Module):
    """Waveform [B, S] -> log-mel [B, n_mels, T] with T = S // hop_length (torch.stft, Hann window, centred)."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, hop_length: int = 320, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None, eps: float = 1e-6):
        super().__init__()
        self.n_fft, self.hop_length, self.eps = n_fft, hop_length, eps
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = mel_filterbank(n_fft // 2 + 1, f_min, f_max or sample_rate / 2, n_mels, sample_rate)
        self.register_buffer("fb", fb, persistent=False)

    @classmethod
    def from_config(cls, cfg: AudioEncoderConfig) -> LogMel:
        return cls(cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.f_min, cfg.f_max)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave.float(), self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="reflect" if wave.shape[-1] > self.n_fft // 2 else "constant",
                          return_complex=True)
        power = spec.real.square() + spec.imag.square()  # [B, F, T+1]
        mel = torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)  # [B, n_mels, T+1]
        t = wave.shape[-1] // self.hop_length
        return torch.log(mel[..., :t] + self.eps)


# --------------------------------------------------------------------------------------- trainable conv encoder
def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """`F.max_pool2d(x, 2, ceil_mode=True)` over the last two dims, as two strided maxima (odd sizes padded with
    -inf, so an edge window keeps only its real values): the same values, without the index tensor the CPU kernel
    always computes; it took 20% of the fusion model's inference time."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = nn.functional.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
    x = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(x[..., 0::2], x[..., 1::2])


class ConvAudioEncoder(nn.Module):
    """Small CNN over a log-mel chunk: [B, n_mels, T] -> [B, out_dim]. Trained downstream (fusion model).

    Per-mel-bin BatchNorm on the input (log-mel values are unnormalised), four conv blocks (3x3 conv, BN, GELU,
    2x2 max-pool), mean over frequency, mean+max over time, linear projection.

    In eval mode the same function is computed faster (`_conv_eval`): each BatchNorm is folded into its
    convolution, pooling is `max_pool_2x2`, and chunks go through in groups whose first activation stays in cache
    (`eval_elements`); a 200-chunk pass streamed each elementwise op through memory. Together 6x faster on one
    core; outputs equal to float rounding (tests/embedding/test_fusion_inference.py).
    """

    eval_elements: int = 2**21
    """Floats of the first conv block's output per eval group (8 MB: 40 chunks of 64 mels x 100 frames x 8)."""

    def __init__(self, n_mels: int, out_dim: int, channels: tuple[int, ...] = (32, 64, 128, 256),
                 dropout: float = 0.1):
        super().__init__()
        self.n_mels, self.out_dim = n_mels, out_dim
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
        x = self.input_norm(x.float()).unsqueeze(1)  # [B, 1, n_mels, T]
        if self.training:  # batch statistics: the whole batch at once, through the modules
            x = self.conv(x)
        else:
            group = max(1, self.eval_elements // max(1, self.conv[0].out_channels * x.shape[-2] * x.shape[-1]))
            x = torch.cat([self._conv_eval(part) for part in x.split(group)]) if len(x) > group else self._conv_eval(x)
        x = x.mean(dim=2)  # [B, C, T']
        x = torch.cat([x.mean(-1), x.amax(-1)], dim=-1)
        return self.proj(self.dropout(x))

    def _conv_eval(self, x: torch.Tensor) -> torch.Tensor:
        """`self.conv(x)` with running statistics: BN folded into each conv (weight * s, shift b - mean * s)."""
        blocks = list(self.conv)
        for i in range(0, len(blocks), 4):
            conv, bn, act = blocks[i], blocks[i + 1], blocks[i + 2]
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            x = act(nn.functional.conv2d(x, conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale,
                                         conv.stride, conv.padding))
            x = max_pool_2x2(x)
        return x


# --------------------------------------------------------------------------------------------- frozen encoders
class AudioEncoder:
    """Chunks -> log-mel [K, n_mels, T] ("logmel") or frozen HF embeddings [K, Da] ("embedding")."""

    def __init__(self, cfg: AudioEncoderConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.kind = "logmel" if cfg.model == "logmel" else "embedding"
        self.model = None
        self.frontend: LogMel | None = None
        self.feature_extractor = None
        self.model_type = None
        self.calls = 0
        self.encoded = 0
        self._dim: int | None = None
        self._sr: int | None = None

    def _hf_path(self) -> Path:
        path = Path(self.cfg.model).expanduser()
        if not path.is_dir():
            raise ConfigError(f"encoders.audio.model: '{self.cfg.model}' is neither 'logmel' nor a local Hugging Face "
                              "audio checkpoint directory")
        return path

    @property
    def identity(self) -> dict:
        c = self.cfg
        ident = {"kind": self.kind, "chunk_seconds": c.chunk_seconds, "max_chunks": c.max_chunks,
                 "sample_rate": self.sample_rate}
        if self.kind == "logmel":
            ident.update(n_fft=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels, f_min=c.f_min, f_max=c.f_max,
                         log_eps=1e-6, mel="htk")
        else:
            ident.update(model=c.model, path=str(self._hf_path().resolve()))
        return ident

    @property
    def sample_rate(self) -> int:
        if self._sr is None:
            if self.kind == "logmel":
                self._sr = self.cfg.sample_rate
            else:
                self._load_feature_extractor()
                self._sr = int(getattr(self.feature_extractor, "sampling_rate", self.cfg.sample_rate))
        return self._sr

    @property
    def chunk_samples(self) -> int:
        return int(round(self.cfg.chunk_seconds * self.sample_rate))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Per-chunk shape: (n_mels, T) or (Da,)."""
        if self.kind == "logmel":
            return (self.cfg.n_mels, self.chunk_samples // self.cfg.hop_length)
        self.load()
        return (int(self._dim),)

    def _load_feature_extractor(self):
        if self.feature_extractor is not None:
            return
        from transformers import AutoConfig

        path = self._hf_path()
        config = AutoConfig.from_pretrained(str(path))
        self.model_type = config.model_type
        try:
            from transformers import AutoFeatureExtractor

            self.feature_extractor = AutoFeatureExtractor.from_pretrained(str(path))
        except Exception:
            if config.model_type == "audio-spectrogram-transformer":
                from transformers import ASTFeatureExtractor

                self.feature_extractor = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins,
                                                             max_length=config.max_length,
                                                             sampling_rate=self.cfg.sample_rate)
            elif config.model_type == "clap":
                from transformers import ClapFeatureExtractor

                fused = bool(getattr(config.audio_config, "enable_fusion", False))
                self.feature_extractor = ClapFeatureExtractor(truncation="fusion" if fused else "rand_trunc")
            else:
                raise ConfigError(f"encoders.audio.model: no feature extractor (preprocessor_config.json) in {path} "
                                  f"and no default for model type '{config.model_type}'") from None

    def load(self) -> AudioEncoder:
        if self.kind == "logmel":
            if self.frontend is None:
                self.frontend = LogMel.from_config(self.cfg).to(self.device)
            return self
        if self.model is not None:
            return self
        from transformers import AutoModel

        self._load_feature_extractor()
        with quiet_hf_loading():
            model = AutoModel.from_pretrained(str(self._hf_path()))
        model = model.eval().to(self.device)
        for p in model.parameters():
            p.requires_grad_(False)
        cfg = model.config
        if self.model_type == "clap":
            self._dim = int(cfg.projection_dim)
        else:
            self._dim = int(getattr(cfg, "hidden_size", None) or cfg.d_model)
        self.model = model
        return self

    @torch.inference_mode()
    def encode(self, chunks: np.ndarray) -> np.ndarray:
        """[B, chunk_samples] float32 -> [B, n_mels, T] log-mel or [B, Da] embeddings (float32)."""
        self.load()
        self.calls += 1
        self.encoded += len(chunks)
        if self.kind == "logmel":
            return self.frontend(torch.from_numpy(chunks).to(self.device)).cpu().numpy()
        feats = self.feature_extractor(list(chunks), sampling_rate=self.sample_rate, return_tensors="pt")
        feats = {k: v.to(self.device) for k, v in feats.items() if isinstance(v, torch.Tensor)}
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
            if self.model_type == "clap":
                out = self.model.get_audio_features(**feats)
                emb = out if isinstance(out, torch.Tensor) else out.pooler_output
            else:
                out = self.model(**feats)
                pooled = getattr(out, "pooler_output", None)
                emb = pooled if pooled is not None else out.last_hidden_state.mean(1)
        return emb.float().cpu().numpy()
