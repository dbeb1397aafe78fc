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


def test_report_has_every_section_and_says_why_a_cell_is_empty(tmp_path):
    ranking = {"baseline": "dlrm_baseline", "table": [
        {**RANKING[0], "validation_auc": 0.69, "n_cold": 0, "auc_cold": np.nan},
        {"variant": "dlrm_baseline", "auc": 0.72, "validation_auc": 0.71, "n_cold": 0, "auc_cold": np.nan},
        {**RANKING[1], "validation_auc": 0.74, "auc_diff_vs_baseline": 0.03, "auc_diff_vs_baseline_lo": 0.01,
         "auc_diff_vs_baseline_hi": 0.05, "n_cold": 12, "auc_cold": np.nan}],
        "attribution": [{"group": "semantic IDs (content)", "variant": "match_sid", "without": "match",
                         "auc_diff_vs_without": -0.002, "auc_diff_vs_without_lo": -0.01,
                         "auc_diff_vs_without_hi": 0.006}],
        "importance": [{"variant": "match", "feature": "cos_mean", "permutation_auc_drop": 0.02}]}
    path = write_results(tmp_path / "results.md", "runs/demo", "sqlite:///x.db", ranking,
                         embedding_metrics={"q2i/recall@10": 0.3, "baseline/q2i/recall@10": 0.2},
                         cre_metrics={"i2i/recall@50": 0.11, "before/i2i/recall@50": 0.07},
                         lifetime=None, lifetime_skipped="no behaviour law for this dataset")
    text = path.read_text()
    assert text.startswith("# Results: runs/demo")
    assert "Strongest baseline: **dlrm_baseline**" in text and "baseline 0.6900, dlrm_baseline 0.7100" in text
    assert "+0.0300 [+0.0100, +0.0500]" in text                          # the lift with its interval
    assert "-0.0020 [-0.0100, +0.0060]" in text                          # the attribution row
    assert "cos_mean" in text and "+0.0200" in text                      # the importance table
    assert "no test example has an item unseen before the test period" in text
    assert "12 examples, all of one class: AUC undefined" in text
    assert "| q2i/recall@10 | 0.2000" in text and "+0.1000" in text      # embedding vs text-only
    assert "| i2i/recall@50 | 0.0700" in text and "+0.0400" in text      # CRE before/after
    assert "Not simulated: no behaviour law for this dataset." in text
    assert text.rstrip().endswith("`mlflow ui --backend-store-uri sqlite:///x.db`")
