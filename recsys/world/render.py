"""Render the media of a synthetic world: PNG images (cover + key frames) and 16 kHz mono WAV clips.

What each modality shows (learnable but noisy; the collaborative latents are never used here):

image  topic  -> hue of the main shapes (topics spread around the colour wheel, jittered) and shape family
                 (circle, square, triangle, star, cross, ring; a topic = a (hue, shape) pair)
       second topic -> one smaller shape in its own hue and family
       style  -> background texture (gradient, stripes, grain, plain, vignette, dots, checker, heavy noise)
audio  topic  -> pitch band (base pitch log-spaced over 150-1200 Hz, jittered) and tempo (notes per second)
       second topic -> a quiet drone at its base pitch
       style  -> timbre (harmonic profile) and note envelope
Every file also gets random layout, melody and noise, so two items of the same topic and style differ.
Rendering is deterministic: each item draws from its own random stream `(seed, stream, item index)`.
"""

from __future__ import annotations

import colorsys
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from recsys.world.generator import World
from recsys.world.latents import stream

_S_IMAGE, _S_AUDIO, _S_MISSING = 11, 12, 13
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")

# harmonic amplitudes (timbre) and note envelope ("sustain" | "pluck" | "swell") per style
TIMBRES: list[tuple[list[float], str]] = [
    ([1.0], "swell"),                                        # calm: pure sine, soft attack
    ([1.0, 0.5, 0.33, 0.25, 0.2, 0.17], "pluck"),            # energetic: sawtooth, percussive
    ([1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14], "sustain"),      # vintage: square-ish (odd harmonics)
    ([1.0, 0.3], "sustain"),                                 # minimal
    ([1.0, 0.6, 0.6, 0.4, 0.4, 0.3], "swell"),               # dramatic: rich, slow attack
    ([1.0, 0.0, 0.5, 0.0, 0.3], "pluck"),                    # playful: hollow, plucked
    ([1.0, 0.2, 0.1], "swell"),                              # cozy: warm, soft
    ([1.0, 0.7, 0.5, 0.4, 0.3, 0.3, 0.25], "sustain"),       # raw: bright and noisy
]
SCALE = np.array([1.0, 9 / 8, 5 / 4, 3 / 2, 5 / 3, 2.0])  # pentatonic ratios of the base pitch


def topic_hue(topic: int, n_topics: int) -> float:
    return (topic * 360.0 / n_topics) % 360.0


def topic_pitch(topic: int, n_topics: int) -> float:
    return 150.0 * 8.0 ** (topic / max(1, n_topics - 1))


def topic_tempo(topic: int, n_topics: int) -> float:
    return 2.0 + 6.0 * ((topic * 5) % n_topics) / n_topics


def _rgb(hue_deg: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360) / 360.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _texture(style: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Background [H, W, 3] float in 0..255 for a style."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.array(_rgb(rng.uniform(0, 360), rng.uniform(0.05, 0.2), rng.uniform(0.8, 0.95)), np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    s = style % 8
    if s == 0:    # calm: smooth vertical gradient
        img *= (0.75 + 0.25 * y)[..., None]
    elif s == 1:  # energetic: dense diagonal stripes
        img *= (0.7 + 0.3 * (np.sin((x + y) * rng.uniform(25, 35) + rng.uniform(0, 6)) > 0))[..., None]
    elif s == 2:  # vintage: sepia grain
        img = img * 0.6 + np.array([112, 66, 20], np.float32) * 0.4
        img += rng.normal(0, 10, (size, size, 1))
    elif s == 3:  # minimal: plain
        pass
    elif s == 4:  # dramatic: dark vignette
        r = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
        img *= np.clip(1.1 - 1.6 * r, 0.15, 1)[..., None]
    elif s == 5:  # playful: polka dots
        period = rng.uniform(0.12, 0.18)
        d = np.sqrt(((x % period) - period / 2) ** 2 + ((y % period) - period / 2) ** 2)
        img = np.where((d < period / 4)[..., None], img * 0.7, img)
    elif s == 6:  # cozy: soft checker
        period = rng.uniform(0.2, 0.3)
        img *= (0.85 + 0.15 * (((x // period) + (y // period)) % 2))[..., None]
    else:         # raw: heavy noise
        img += rng.normal(0, 30, (size, size, 3))
    return img


def _draw_shape(draw: ImageDraw.ImageDraw, shape: int, cx: float, cy: float, r: float, fill) -> None:
    kind = SHAPES[shape % len(SHAPES)]
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif kind == "star":
        a = np.arange(10) * np.pi / 5 - np.pi / 2
        rr = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        draw.polygon(list(zip((cx + rr * np.cos(a)).tolist(), (cy + rr * np.sin(a)).tolist())), fill=fill)
    elif kind == "cross":
        w = r * 0.35
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    else:  # ring
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(2, int(r * 0.35)))


def render_images(world: World, i: int, rng: np.random.Generator) -> list[Image.Image]:
    """Cover and key frames of item index i."""
    cfg, items = world.config, world.items
    size, k = cfg.image_size, cfg.n_topics
    t1, t2, style = int(items.primary_topic[i]), int(items.secondary_topic[i]), int(items.style[i])
    hue1 = topic_hue(t1, k) + rng.normal(0, cfg.colour_jitter)
    hue2 = topic_hue(t2, k) + rng.normal(0, cfg.colour_jitter) if t2 >= 0 else None
    n_main = int(rng.integers(1, 4))
    frames = []
    for _ in range(cfg.n_frames):
        img = Image.fromarray(np.clip(_texture(style, size, rng), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(n_main):
            r = size * rng.uniform(0.12, 0.25)
            cx, cy = rng.uniform(r, size - r, 2)
            _draw_shape(draw, t1, cx, cy, r, _rgb(hue1 + rng.normal(0, 4), rng.uniform(0.6, 1), rng.uniform(0.6, 1)))
        if hue2 is not None:
            r = size * rng.uniform(0.08, 0.15)
            cx, cy = rng.uniform(r, size - r, 2)
            _draw_shape(draw, t2, cx, cy, r, _rgb(hue2, rng.uniform(0.6, 1), rng.uniform(0.6, 1)))
        arr = np.asarray(img, np.float32) + rng.normal(0, 6, (size, size, 3))
        frames.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return frames


def render_audio(world: World, i: int, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 clip in [-1, 1] of item index i."""
    cfg, items = world.config, world.items
    sr, k = cfg.sample_rate, cfg.n_topics
    n = int(round(cfg.audio_seconds * sr))
    t = np.arange(n, dtype=np.float64) / sr
    t1, t2, style = int(items.primary_topic[i]), int(items.secondary_topic[i]), int(items.style[i])
    f0 = topic_pitch(t1, k) * np.exp(rng.normal(0, cfg.pitch_jitter))
    tempo = topic_tempo(t1, k) * np.exp(rng.normal(0, 0.1))
    n_notes = int(np.ceil(cfg.audio_seconds * tempo)) + 1
    freqs = f0 * SCALE[rng.integers(0, len(SCALE), n_notes)]
    note = np.minimum((t * tempo).astype(np.int64), n_notes - 1)
    phase = (np.cumsum(freqs[note] * (2 * np.pi / sr)) % (2 * np.pi)).astype(np.float32)
    harmonics, env_kind = TIMBRES[style % len(TIMBRES)]
    # sum of a_h sin(h phase) by the Chebyshev recurrence sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x)
    s1, c2 = np.sin(phase), 2 * np.cos(phase)
    sig, prev, cur = harmonics[0] * s1, np.zeros(n, np.float32), s1
    for h, a in enumerate(harmonics[1:], start=2):
        prev, cur = cur, c2 * cur - prev
        if a and f0 * h * 2 < sr / 2:
            sig += np.float32(a) * cur
    pos = np.clip(t * tempo - note, 0, 1).astype(np.float32)  # position within the note, 0..1
    if env_kind == "pluck":
        env = np.exp(np.float32(-5) * pos)
    elif env_kind == "swell":
        env = np.maximum(np.sin(np.float32(np.pi) * pos), 0) ** np.float32(0.7)
    else:
        env = np.minimum(1, pos * 20) * np.minimum(1, (1 - pos) * 20)
    sig *= env / np.float32(max(1e-6, np.abs(sig).max()))
    if t2 >= 0:
        f2 = topic_pitch(t2, k) * np.exp(rng.normal(0, cfg.pitch_jitter))
        sig += np.float32(0.3) * np.sin(((2 * np.pi * f2) * t) % (2 * np.pi)).astype(np.float32)
    noise = 0.25 if style == 7 else rng.uniform(0.01, 0.06)
    sig += np.float32(noise) * rng.standard_normal(n, dtype=np.float32)
    if not np.isfinite(sig).all():
        raise RuntimeError(f"render_audio: non-finite samples for item index {i}")
    return (np.float32(0.8) * sig / np.float32(max(1e-6, np.abs(sig).max()))).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV (stdlib writer: byte-identical for identical samples)."""
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def missing_media(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Which items have no image / no audio (independent of the rendering streams)."""
    rng = stream(world.config.seed, _S_MISSING)
    n = world.config.n_items
    return rng.random(n) < world.config.missing_image, rng.random(n) < world.config.missing_audio


def render_media(world: World, root: Path) -> tuple[list[list[str]], list[str | None]]:
    """Write media under root/media; returns per-item image paths and audio path relative to root."""
    root = Path(root)
    (root / "media" / "img").mkdir(parents=True, exist_ok=True)
    (root / "media" / "audio").mkdir(parents=True, exist_ok=True)
    no_image, no_audio = missing_media(world)
    seed = world.config.seed
    image_paths: list[list[str]] = []
    audio_paths: list[str | None] = []
    for i in tqdm(range(world.config.n_items), desc="render media", unit="item", disable=None):
        item_id = int(world.item_ids[i])
        paths = []
        if not no_image[i]:
            for f, img in enumerate(render_images(world, i, stream(seed, _S_IMAGE, i))):
                rel = f"media/img/{item_id}_{f}.png"
                img.save(root / rel, format="PNG", compress_level=1)
                paths.append(rel)
        image_paths.append(paths)
        if no_audio[i]:
            audio_paths.append(None)
        else:
            rel = f"media/audio/{item_id}.wav"
            write_wav(root / rel, render_audio(world, i, stream(seed, _S_AUDIO, i)), world.config.sample_rate)
            audio_paths.append(rel)
    return image_paths, audio_paths
