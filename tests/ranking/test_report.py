"""The results table (ranking/report.py) from stage records."""

from __future__ import annotations

import numpy as np

from ranking.report import results_table, write_results

RANKING = [{"variant": "baseline", "auc": 0.70, "auc_lo": 0.68, "auc_hi": 0.72, "n_train": 10, "gauc": 0.6},
           {"variant": "match", "auc": 0.75, "auc_lo": 0.73, "auc_hi": 0.77, "n_train": 10, "gauc": 0.65}]
LIFETIME = [{"policy": "random", "lt7": 2.0}, {"policy": "match", "lt7": 3.3, "lt7_lo": 3.1, "lt7_hi": 3.5,
                                               "impressions": 9}]


def test_table_joins_lifetime_by_variant():
    t = results_table(RANKING, LIFETIME)
    assert list(t.columns) == ["variant", "auc", "auc_lo", "auc_hi", "gauc", "lt7", "lt7_lo", "lt7_hi"]
    assert list(t["variant"]) == ["baseline", "match"]                  # policies without a variant are left out
    assert t.loc[1, "lt7"] == 3.3 and np.isnan(t.loc[0, "lt7"])
    assert list(results_table(RANKING).columns) == ["variant", "auc", "auc_lo", "auc_hi", "gauc"]


def test_report_file(tmp_path):
    path = write_results(tmp_path / "results.md", results_table(RANKING, LIFETIME), "runs/demo", "sqlite:///x.db")
    text = path.read_text()
    assert text.startswith("# Results: runs/demo") and "| match" in text and "0.7500" in text
    assert text.rstrip().endswith("`mlflow ui --backend-store-uri sqlite:///x.db`")
