"""One entry point that turns a DataConfig into a prepared canonical dataset directory."""

from __future__ import annotations

from pathlib import Path

from recsys.data.config import DataConfig
from recsys.data.dataset import Dataset, load_dataset
from recsys.data.schema import PositiveRule


def prepare_dataset(cfg: DataConfig, target: Path, world=None, reuse: bool = True) -> Dataset:
    """Prepare (or reuse, when the target already holds a complete dataset) the configured dataset.

    world: the WorldConfig for source 'synthetic'. A prepared dataset is reused only if its manifest exists,
    which write_dataset creates last, so an interrupted prepare is redone.
    """
    target = Path(target)
    if reuse and (target / "manifest.json").is_file():
        return load_dataset(target)
    if cfg.source == "synthetic":
        from recsys.data.adapters.synthetic import prepare_synthetic
        from recsys.world.config import WorldConfig

        world = (world if world is not None else WorldConfig()).model_copy(update={"split": cfg.split.fractions()})
        ds = prepare_synthetic(world, target)
    elif cfg.source == "movielens":
        from recsys.data.adapters.movielens import prepare_movielens

        ds = prepare_movielens(cfg.path, target, posters=cfg.posters, split_fractions=cfg.split.fractions(),
                               unknown_items=cfg.unknown_items)
    else:
        from recsys.data.adapters.parquet import prepare_parquet

        ds = prepare_parquet(cfg.path, target, positive=PositiveRule(cfg.positive.column, cfg.positive.min_value),
                             labels=cfg.labels, split_fractions=cfg.split.fractions(),
                             unknown_items=cfg.unknown_items)
    return load_dataset(target) if ds.root is None else ds
