"""Encoding throughput per modality (items/s, peak memory) and the quality cost of the poster resolution.

    .venv/bin/python benchmarks/encode_throughput.py [--posters 512] [--texts 2000] [--clips 64] [--quality 400]

- image: MovieLens posters (../shared/data/movielens-small/posters) through encode_items with an empty cache
  (end to end: read + hash + decode + resize + EfficientNet-Lite0 + cache write), at the default 192x128 and at 224x224;
- text: MovieLens titles + genres (+ user tags) through the shipped MiniLM;
- audio: generated 10 s WAV clips (16 kHz) through the log-mel front end (5 chunks of 2 s each);
- quality: kNN genre agreement and a linear probe (mean one-vs-rest AUC over frequent genres) of mean-pooled poster
  features at each resolution / feature choice.
Each measurement runs in a fresh subprocess so its peak RSS (resource.getrusage) is its own; items per CPU-second
(user+sys of the process) is reported beside the wall-clock rate because other processes may share the cores.
Prints a table and replaces the
"Encoding throughput" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
MOVIELENS = Path(os.environ.get("RECSYS_SHARED", REPO.parent / "shared")) / "data" / "movielens-small"

from _report import machine, replace_section  # noqa: E402


def _movies(n: int, with_posters: bool):
    import pandas as pd

    movies = pd.read_csv(MOVIELENS / "movies.csv")
    tags = pd.read_csv(MOVIELENS / "tags.csv").groupby("movieId")["tag"].apply(lambda s: sorted(set(map(str, s)))[:8])
    movies["tags"] = movies["movieId"].map(tags).map(lambda v: v if isinstance(v, list) else [])
    movies["poster"] = movies["movieId"].map(lambda m: MOVIELENS / "posters" / f"{m}.jpg")
    if with_posters:
        movies = movies[movies["poster"].map(Path.is_file)]
    movies = movies[movies["genres"] != "(no genres listed)"]
    return movies.sample(n=min(n, len(movies)), random_state=0).sort_values("movieId")


def _dataset(movies, root: Path, audio_paths=None):
    import numpy as np
    import pandas as pd

    from recsys.data.dataset import build_dataset, load_dataset, write_dataset
    from recsys.data.schema import PositiveRule

    items = pd.DataFrame({
        "item_id": movies["movieId"].to_numpy(), "created_at": "2018-01-01T00:00:00Z",
        "title": movies["title"].to_numpy(), "categories": movies["genres"].str.split("|").to_numpy(),
        "tags": movies["tags"].to_numpy(),
        "image_paths": [[str(p)] for p in movies["poster"]] if audio_paths is None else [[] for _ in movies.index],
        "audio_path": audio_paths,
    })
    n = len(items)
    inter = pd.DataFrame({"user_id": np.arange(n) % 7, "item_id": items["item_id"],
                          "timestamp": pd.date_range("2018-01-02", periods=n, freq="min", tz="UTC"),
                          "rating": 4.0})
    ds = build_dataset(name="bench", source="movielens-small", items=items, interactions=inter,
                       labels={"rating": "rating"}, positive=PositiveRule("rating", 4.0), split=(0.1, 0.1))
    write_dataset(ds, root / "ds")
    return load_dataset(root / "ds")


def _write_clips(root: Path, n: int, seconds: float = 10.0, sr: int = 16000) -> list[str]:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        wave = 0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.05 * rng.standard_normal(len(t))
        p = root / f"clip{i}.wav"
        sf.write(p, wave.astype(np.float32), sr)
        paths.append(str(p))
    return paths


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _measure(job: dict, queue) -> None:
    """Runs in a subprocess: one modality, empty cache, reports rate and memory."""
    from embedding.encoders import EncoderConfig, encode_items, encode_texts
    from recsys.runtime import resolve_threads

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kind = job["kind"]
        threads = job["threads"] or EncoderConfig().num_threads
        base = {"progress": False, "num_threads": threads}
        if kind == "image":
            movies = _movies(job["n"], with_posters=True)
            ds = _dataset(movies, root)
            cfg = EncoderConfig(text={"enabled": False}, audio={"enabled": False},
                                image=job["image"], **base)
            encode_items(_dataset(movies.head(8), root / "warm"), cfg, root / "warm_cache", device="cpu")  # load
            t0, c0 = time.perf_counter(), _cpu()
            enc = encode_items(ds, cfg, root / "cache", device="cpu")
            n = enc.info["encoded"]["image"]
            shape = list(enc.image.shape[1:])
            bytes_per_item = int(enc.image[0].nbytes)
        elif kind == "text":
            movies = _movies(job["n"], with_posters=False)
            ds = _dataset(movies, root)
            cfg = EncoderConfig(image={"enabled": False}, audio={"enabled": False}, **base)
            encode_texts(["warm up"], cfg, None, device="cpu")
            t0, c0 = time.perf_counter(), _cpu()
            enc = encode_items(ds, cfg, root / "cache", device="cpu")
            n = enc.info["encoded"]["text"]
            shape = list(enc.text.tokens.shape[1:])
            bytes_per_item = int(enc.text.tokens[0].nbytes + enc.text.field[0].nbytes)
        else:
            movies = _movies(job["n"], with_posters=False)
            clips = _write_clips(root, len(movies))
            ds = _dataset(movies, root, audio_paths=clips)
            cfg = EncoderConfig(text={"enabled": False}, image={"enabled": False}, audio={"max_chunks": 5}, **base)
            t0, c0 = time.perf_counter(), _cpu()
            enc = encode_items(ds, cfg, root / "cache", device="cpu")
            n = enc.info["encoded"]["audio"]
            shape = list(enc.audio.shape[1:])
            bytes_per_item = int(enc.audio[0].nbytes)
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
        cache_bytes = sum(p.stat().st_size for p in (root / "cache").rglob("*.npz"))
    queue.put({"kind": kind, "label": job["label"], "items": n, "seconds": seconds, "rate": n / seconds,
               "cpu_rate": n / max(cpu, 1e-9), "threads": resolve_threads(threads),
               "shape": shape, "bytes_per_item": bytes_per_item, "cache_bytes_per_item": cache_bytes / max(n, 1),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _quality(job: dict, queue) -> None:
    """kNN genre agreement and linear-probe AUC of mean-pooled poster features for several encoder settings."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from embedding.encoders import EncoderConfig, encode_items

    movies = _movies(job["n"], with_posters=True)
    genres = movies["genres"].str.split("|").tolist()
    vocab = sorted({g for gs in genres for g in gs})
    y = np.array([[g in gs for g in vocab] for gs in genres])
    frequent = [j for j in np.argsort(-y.sum(0)) if y[:, j].sum() >= 25][:6]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ds = _dataset(movies, Path(tmp))
        for label, image in job["settings"]:
            cfg = EncoderConfig(text={"enabled": False}, audio={"enabled": False}, image=image, progress=False,
                                num_threads=job["threads"] or EncoderConfig().num_threads)
            enc = encode_items(ds, cfg, Path(tmp) / "cache", device="cpu")
            x = enc.image[:, 0].astype(np.float32).mean(1)  # mean over patches -> [N, Di]
            x = (x - x.mean(0)) / (x.std(0) + 1e-6)
            xn = x / np.linalg.norm(x, axis=1, keepdims=True)
            sim = xn @ xn.T
            np.fill_diagonal(sim, -np.inf)
            nn = np.argsort(-sim, axis=1)[:, :10]
            share = (y[:, None, :] & y[nn]).any(-1).mean()
            aucs = []
            for j in frequent:
                p = cross_val_predict(LogisticRegression(C=0.05, max_iter=2000), x, y[:, j], cv=5,
                                      method="predict_proba")[:, 1]
                aucs.append(roc_auc_score(y[:, j], p))
            rows.append({"label": label, "knn_share": float(share), "probe_auc": float(np.mean(aucs))})
    chance = float((y[:, None, :] & y[None, :, :]).any(-1).mean())
    queue.put({"rows": rows, "chance": chance, "n": len(movies), "genres": [vocab[j] for j in frequent]})


def _run(fn, job: dict) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(job, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posters", type=int, default=512)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--quality", type=int, default=800, help="posters for the quality check (0 = skip)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the encoder config's)")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    machine_line = machine()
    jobs = [
        {"kind": "image", "label": "image 192x128 block-320 (default)", "n": args.posters, "image": {}},
        {"kind": "image", "label": "image 192x128 head-1280", "n": args.posters, "image": {"feature": "head"}},
        {"kind": "image", "label": "image 224x224 head-1280", "n": args.posters,
         "image": {"image_size": [224, 224], "feature": "head"}},
        {"kind": "text", "label": "text (title+genres+tags)", "n": args.texts},
        {"kind": "audio", "label": "audio log-mel (10 s clips)", "n": args.clips},
    ]
    results = []
    for job in jobs:
        r = _run(_measure, {**job, "threads": args.threads})
        results.append(r)
        print(f"{r['label']:<28} {r['items']:>5} items {r['rate']:8.1f}/s ({r['cpu_rate']:.1f}/CPU-s)  "
              f"shape {r['shape']}  "
              f"{r['bytes_per_item'] / 1024:.1f} KiB/item  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    quality = None
    if args.quality:
        settings = [("192x128, block 320-ch (default)", {}),
                    ("192x128, head 1280-ch", {"feature": "head"}),
                    ("224x224, block 320-ch", {"image_size": [224, 224]}),
                    ("224x224, head 1280-ch", {"image_size": [224, 224], "feature": "head"}),
                    ("160x112, block 320-ch", {"image_size": [160, 112]})]
        quality = _run(_quality, {"n": args.quality, "threads": args.threads, "settings": settings})
        for row in quality["rows"]:
            print(f"{row['label']:<34} kNN@10 genre share {row['knn_share']:.3f}  probe AUC {row['probe_auc']:.3f}")
        print(f"chance genre share {quality['chance']:.3f}")

    lines = [f"Measured {dt.date.today().isoformat()} with `benchmarks/encode_throughput.py` on {machine_line}; "
             f"torch threads = {results[0]['threads']}, CPU only. Other processes (parallel helpers, tests) may "
             "share these "
             "cores, so rates are lower bounds. End to end with an empty cache: read + hash + decode + encode + "
             "cache write; model loading excluded.", "",
             "| modality | items | items/s (wall) | items per CPU-second | per-item shape | fp16 KiB/item | "
             "cache KiB/item | peak RSS MB |", "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['items']} | {r['rate']:.1f} | {r['cpu_rate']:.1f} | {r['shape']} | "
                     f"{r['bytes_per_item'] / 1024:.1f} | {r['cache_bytes_per_item'] / 1024:.1f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    lines.append("")
    lines.append("Text per-item shape is [Lt, Dt] with Lt = the longest item of the run (padding); audio is "
                 "[K, n_mels, T] for 10 s clips (5 chunks of 2 s).")
    if quality:
        lines += ["", f"Quality of mean-pooled poster features ({quality['n']} MovieLens posters): share of the 10 "
                  f"nearest neighbours (cosine) sharing a genre with the query (chance "
                  f"{quality['chance']:.3f}), and linear-probe AUC (5-fold logistic regression, mean over "
                  f"{', '.join(quality['genres'])}).", "",
                  "| setting | kNN@10 genre share | probe AUC |", "|---|---:|---:|"]
        lines += [f"| {r['label']} | {r['knn_share']:.3f} | {r['probe_auc']:.3f} |" for r in quality["rows"]]
    img = [r for r in results if r["kind"] == "image"]
    speedup = img[0]["cpu_rate"] / img[-1]["cpu_rate"]
    lines += ["", f"Default vs 224x224 head-1280 (the stack notes' setting): {speedup:.1f}x "
              f"the posters per CPU-second, {img[-1]['bytes_per_item'] / img[0]['bytes_per_item']:.0f}x less storage"
              + (f"; kNN genre share {quality['rows'][0]['knn_share'] - quality['rows'][3]['knn_share']:+.3f}, "
                 f"probe AUC {quality['rows'][0]['probe_auc'] - quality['rows'][3]['probe_auc']:+.3f}."
                 if quality else ".")]
    section = "\n".join(lines) + "\n\n"
    print()
    print(section)
    if not args.no_write:
        replace_section("Encoding throughput", section, args.out)
        print(f"updated {args.out}")


if __name__ == "__main__":
    main()
