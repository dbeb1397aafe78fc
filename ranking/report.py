"""The main job's results table: one row per variant with its test metrics and, where simulated, its lifetime.

Built from the ranking stage's comparison table and the simulation stage's summary (both as stored in their
stage markers: lists of records), so a finished run directory can be reported again without recomputing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.io import write_text

RANKING_COLUMNS = ("variant", "auc", "auc_lo", "auc_hi", "gauc", "gauc_lo", "gauc_hi", "logloss",
                   "auc_diff_vs_baseline", "auc_diff_vs_baseline_lo", "auc_diff_vs_baseline_hi", "ref_variant",
                   "auc_diff_vs_ref", "auc_diff_vs_ref_lo", "auc_diff_vs_ref_hi", "auc_cold", "auc_cold_lo",
                   "auc_cold_hi", "n_cold")
LIFETIME_COLUMNS = ("lt7", "lt7_lo", "lt7_hi", "lt14", "lt14_lo", "lt14_hi", "lt7_diff", "lt7_diff_lo", "lt7_diff_hi")


def results_table(ranking: Sequence[dict[str, Any]], lifetime: Sequence[dict[str, Any]] | None = None) -> pd.DataFrame:
    """variant, AUC, GAUC, log loss (with CIs), differences, cold-item AUC, LT7, LT14 (with CIs, where simulated).

    ranking: the comparison table's records; lifetime: the simulator summary's records (column `policy`).
    """
    rows = pd.DataFrame(list(ranking))
    table = rows[[c for c in RANKING_COLUMNS if c in rows.columns]].copy()
    if lifetime:
        lt = pd.DataFrame(list(lifetime)).set_index("policy")
        for col in LIFETIME_COLUMNS:
            if col in lt.columns:
                table[col] = table["variant"].map(lt[col])
    return table


def write_results(path: str | Path, table: pd.DataFrame, title: str, mlflow_uri: str) -> Path:
    """results.md: the table in markdown and how to open the MLflow runs."""
    lines = [f"# Results: {title}", "", table.to_markdown(index=False, floatfmt=".4f"), "",
             f"MLflow: `mlflow ui --backend-store-uri {mlflow_uri}`"]
    return write_text(path, "\n".join(lines) + "\n")
