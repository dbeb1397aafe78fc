"""Entry points the CLI wires: `recsys features apply` and `recsys features materialize`."""

from __future__ import annotations

from pathlib import Path

from features.repo import FeatureRepo


def apply_repo(run_dir: str | Path) -> FeatureRepo:
    """Register the run's feature repository (sources must have been written by FeatureRepo.write)."""
    repo = FeatureRepo(run_dir)
    repo.write_config()
    repo.apply()
    return repo


def materialize_repo(run_dir: str | Path, end) -> dict:
    """Incrementally materialize the run's feature views into the online store up to `end` (idempotent).

    Returns {"rows": {view: rows in the window}, "total_rows", "seconds", "rows_per_s"}.
    """
    return FeatureRepo(run_dir).materialize(end)
