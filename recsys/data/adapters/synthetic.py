"""Synthetic omni-modal world -> canonical dataset (with media and ground truth under world/).

The dataset is a pure function of the WorldConfig: the same seed gives byte-identical tables and media (same
manifest content_hash), another seed a different world. Interactions are impressions with labels like (0/1),
finish (0/1) and watch_ratio (0..1); the positive rule is like >= 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

from recsys.data.dataset import Dataset, build_dataset, write_tables
from recsys.data.schema import PositiveRule
from recsys.io import atomic_directory
from recsys.world.config import WorldConfig
from recsys.world.generator import generate_world
from recsys.world.render import render_media

log = logging.getLogger(__name__)

LABELS = {
    "like": "1 if the user liked the item in this impression, else 0",
    "finish": "1 if the user watched (nearly) to the end (watch_ratio >= finish threshold), else 0",
    "watch_ratio": "fraction of the item watched, 0..1",
}


def build_synthetic(cfg: WorldConfig, directory: Path, feedback: str = "auto") -> Dataset:
    """Generate the world, render its media and save its ground truth into `directory` (a dataset folder being
    written); returns the dataset, tables not yet written (write_tables)."""
    sample = generate_world(cfg)
    world = sample.world
    image_paths, audio_paths = render_media(world, directory)
    world.save(directory / "world")
    items = sample.items.assign(image_paths=image_paths, audio_path=audio_paths)
    return build_dataset(
        name=cfg.name, source=f"synthetic:seed={cfg.seed}", items=items, interactions=sample.interactions,
        labels=LABELS, positive=PositiveRule("like", 1.0), split=(cfg.split[0], cfg.split[1]), users=sample.users,
        queries=sample.queries, feedback=feedback,
        extra={"world": cfg.model_dump(mode="json"), "simulation_start_day": world.end_day,
               "start_date": world.start.isoformat()})


def prepare_synthetic(cfg: WorldConfig, target: str | Path) -> Dataset:
    """Generate, render and write a synthetic dataset atomically to `target`; returns it with root set."""
    target = Path(target)
    with atomic_directory(target) as tmp:
        ds = write_tables(build_synthetic(cfg, tmp), tmp)
    ds.root = target
    log.info("synthetic dataset written to %s (%d items, %d interactions)", target, len(ds.items),
             len(ds.interactions))
    return ds
