"""One entry point that turns a DataConfig into a prepared canonical dataset directory.

A folder that already holds a dataset is reused only when the dataset was prepared from the same inputs (source
fingerprint, recsys.data.fingerprint); otherwise prepare stops and names what differs: nothing is replaced
silently. With reuse=False it re-prepares atomically (the old dataset stays until the new one is complete). Before
anything is written, the dataset must be usable by a run (recsys.data.checks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from recsys.data.adapters import movielens, parquet
from recsys.data.checks import check_split
from recsys.data.config import DataConfig
from recsys.data.dataset import Dataset, load_dataset, read_manifest, write_tables
from recsys.data.fingerprint import differences, file_entries, fingerprint, names_entry
from recsys.data.schema import FORMAT_VERSION, Manifest, PositiveRule
from recsys.errors import DataError
from recsys.io import atomic_directory

log = logging.getLogger(__name__)


def _world(cfg: DataConfig, world):
    if cfg.source != "synthetic":
        return None
    from recsys.world.config import WorldConfig

    return (world if world is not None else WorldConfig()).model_copy(update={"split": cfg.split.fractions()})


def source_inputs(cfg: DataConfig, world=None, previous: dict | None = None) -> dict:
    """What a dataset prepared from cfg (and the synthetic world config) depends on; previous: the inputs
    recorded by the last prepare (their file hashes are reused for unchanged size+mtime)."""
    data = cfg.model_dump(mode="json", exclude={"split": {"folds", "fold"}})  # folds are views of one dataset
    for key in ("path", "posters"):
        if getattr(cfg, key) is not None:
            data[key] = str(Path(getattr(cfg, key)).resolve())
    inputs: dict = {"format": FORMAT_VERSION, "data": data, "world": None, "files": {}}
    if cfg.source == "synthetic":
        inputs["world"] = world.model_dump(mode="json")
    else:
        root = Path(cfg.path)
        files = movielens.source_files(root) if cfg.source == "movielens" else parquet.source_files(root)
        inputs["files"] = file_entries(files, root, (previous or {}).get("files"))
        if cfg.posters is not None and Path(cfg.posters).is_dir():
            inputs["posters"] = names_entry(Path(cfg.posters).glob("*.jpg"))
    return inputs


def _existing(target: Path, reuse: bool) -> Manifest | None:
    """The manifest of the dataset in target; None when target is absent or an empty folder, or (reuse=False)
    holds a dataset whose manifest this version cannot read (it is replaced)."""
    if not target.exists():
        return None
    if not target.is_dir():
        raise DataError("exists and is not a folder; choose another output folder", file=str(target))
    if (target / "manifest.json").exists():
        try:
            return read_manifest(target)
        except DataError:
            if reuse:
                raise
            return None
    if any(target.iterdir()):
        raise DataError("exists, is not empty and holds no prepared dataset (no manifest.json); it is not replaced: "
                        "choose another output folder", file=str(target))
    return None


def _builder(cfg: DataConfig, world) -> Callable[[Path], Dataset]:
    if cfg.source == "synthetic":
        from recsys.data.adapters.synthetic import build_synthetic

        return lambda tmp: build_synthetic(world, tmp, feedback=cfg.feedback)
    if cfg.source == "movielens":
        return lambda tmp: movielens.read_movielens(cfg.path, posters=cfg.posters,
                                                    split_fractions=cfg.split.fractions(),
                                                    unknown_items=cfg.unknown_items, feedback=cfg.feedback)
    return lambda tmp: parquet.read_parquet_dataset(
        cfg.path, positive=PositiveRule(cfg.positive.column, cfg.positive.min_value), labels=cfg.labels,
        split_fractions=cfg.split.fractions(), unknown_items=cfg.unknown_items, feedback=cfg.feedback)


def prepare_dataset(cfg: DataConfig, target: Path, world=None, reuse: bool = True) -> Dataset:
    """Prepare the configured dataset into target, or reuse the one there when its source fingerprint matches.

    world: the WorldConfig for source 'synthetic'. The result's manifest carries source_fingerprint (a hash of
    source_inputs) for stage fingerprints downstream.
    """
    target = Path(target)
    world = _world(cfg, world)
    try:
        return _prepare(cfg, target, world, reuse)
    except OSError as e:  # file system: an unreadable source, an unwritable or odd output folder
        raise DataError(f"cannot read or write: {e.strerror or e}", file=str(e.filename or target)) from None


def _prepare(cfg: DataConfig, target: Path, world, reuse: bool) -> Dataset:
    old = _existing(target, reuse)
    inputs = source_inputs(cfg, world, old.source_inputs if old is not None else None)
    if old is not None and reuse:
        if old.source_fingerprint == fingerprint(inputs):
            return load_dataset(target)
        differing = (differences(old.source_inputs, inputs) if old.source_inputs
                     else ["no source fingerprint (not prepared by `recsys data prepare`)"])
        raise DataError(f"holds a dataset prepared from another source/config (differing: {', '.join(differing)}); "
                        "pass --force (CLI) / reuse=False to replace it", file=str(target))
    build = _builder(cfg, world)
    with atomic_directory(target) as tmp:
        ds = build(tmp)
        check_split(ds)
        ds.manifest.source_inputs = inputs
        ds.manifest.source_fingerprint = fingerprint(inputs)
        write_tables(ds, tmp)
    ds.root = target
    log.info("dataset prepared in %s (%s feedback, %d items, %d interactions)", target, ds.feedback, len(ds.items),
             len(ds.interactions))
    return ds
