"""The run's report: every table of a finished run in one results.md, from the stage records alone.

Sections: rankers and lifts (against the strongest baseline, chosen on validation AUC), feature-group attribution,
permutation importance on the test period, cold items (with the reason where a cell is empty), the embedding model
against the text-only baseline, CRE before/after, and the lifetime table where simulated (else why not). Built
from the ranking, embedding, CRE and simulation stage records (lists of records and metric dicts), so a finished
run directory can be reported again without recomputing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.io import write_text

RANKING_COLUMNS = ("variant", "validation_auc", "strongest_baseline", "auc", "auc_lo", "auc_hi", "gauc", "gauc_lo",
                   "gauc_hi", "logloss", "auc_diff_vs_baseline", "auc_diff_vs_baseline_lo", "auc_diff_vs_baseline_hi",
                   "ranker_baseline", "auc_diff_vs_ranker", "auc_diff_vs_ranker_lo", "auc_diff_vs_ranker_hi",
                   "ref_variant", "auc_diff_vs_ref", "auc_diff_vs_ref_lo", "auc_diff_vs_ref_hi", "auc_cold",
                   "auc_cold_lo", "auc_cold_hi", "n_cold")
LIFETIME_COLUMNS = ("lt7", "lt7_lo", "lt7_hi", "lt14", "lt14_lo", "lt14_hi", "lt7_diff", "lt7_diff_lo", "lt7_diff_hi")


def results_table(ranking: Sequence[dict[str, Any]], lifetime: Sequence[dict[str, Any]] | None = None) -> pd.DataFrame:
    """variant, validation AUC, AUC, GAUC, log loss (with CIs), differences, cold-item AUC, LT7, LT14 (with CIs,
    where simulated). ranking: the comparison table's records; lifetime: the simulator summary's records."""
    rows = pd.DataFrame(list(ranking))
    table = rows[[c for c in RANKING_COLUMNS if c in rows.columns]].copy()
    if lifetime:
        lt = pd.DataFrame(list(lifetime)).set_index("policy")
        for col in LIFETIME_COLUMNS:
            if col in lt.columns:
                table[col] = table["variant"].map(lt[col])
    return table


def interval(row: Mapping[str, Any], key: str, signed: bool = False) -> str:
    """'value [lo, hi]' ('-' where missing)."""
    v = row.get(key)
    if v is None or pd.isna(v):
        return "-"
    f = "{:+.4f}" if signed else "{:.4f}"
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is None or pd.isna(lo):
        return f.format(v)
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def _markdown(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "(none)"


def ranking_section(table: pd.DataFrame, baseline: str) -> list[str]:
    val = {r["variant"]: r.get("validation_auc") for _, r in table.iterrows()}
    candidates = [v for v in ("baseline", "dlrm_baseline") if v in val]
    chosen = ", ".join(f"{v} {val[v]:.4f}" for v in candidates if val[v] is not None and not pd.isna(val[v]))
    rows = []
    for _, r in table.iterrows():
        rows.append({"variant": r["variant"], "validation AUC": interval(r, "validation_auc"),
                     "AUC [95% CI]": interval(r, "auc"),
                     f"ΔAUC vs strongest baseline ({baseline})": interval(r, "auc_diff_vs_baseline", True),
                     "ΔAUC vs its ranker's baseline": interval(r, "auc_diff_vs_ranker", True),
                     "ΔAUC vs content-only": interval(r, "auc_diff_vs_ref", True),
                     "GAUC": interval(r, "gauc")})
    return ["## Rankers and lifts (test period, 95% paired bootstrap over users)", "",
            f"Strongest baseline: **{baseline}**, chosen by validation AUC (the latest 20% of the ranker's training "
            f"period, never the test period): {chosen or 'no validation AUC recorded'}. Every ΔAUC is a paired "
            "difference on the same test examples; a lift counts where its interval clears zero.", "",
            _markdown(rows), ""]


def attribution_section(attribution: Sequence[dict[str, Any]]) -> list[str]:
    rows = [{"group": r["group"], "variant": r["variant"], "without the group": r["without"],
             "ΔAUC [95% CI]": interval(r, "auc_diff_vs_without", True),
             "ΔGAUC [95% CI]": interval(r, "gauc_diff_vs_without", True)} for r in attribution]
    return ["## Feature-group attribution (drop-group)", "",
            "What each group adds to a variant that has both: the variant against itself without the group, paired "
            "on the test examples.", "", _markdown(rows), ""]


def importance_section(importance: Sequence[dict[str, Any]], top: int = 8) -> list[str]:
    if not importance:
        return ["## Permutation importance (test period)", "", "(not computed: ranking.importance_repeats is 0)", ""]
    imp = pd.DataFrame(list(importance))
    wide = imp.pivot_table(index="feature", columns="variant", values="permutation_auc_drop", aggfunc="first")
    wide = wide.loc[wide.max(axis=1).sort_values(ascending=False).index[:top]]
    cells = wide.apply(lambda col: col.map(lambda v: "-" if pd.isna(v) else f"{v:+.4f}"))
    return ["## Permutation importance (test period)", "",
            f"Mean test-AUC drop when one feature a variant adds to its baseline is shuffled (top {top}; - = not a "
            "feature the variant adds).", "", cells.reset_index().to_markdown(index=False, disable_numparse=True), ""]


def cold_section(table: pd.DataFrame) -> list[str]:
    rows = []
    for _, r in table.iterrows():
        n = r.get("n_cold")
        if n is None or pd.isna(n):
            why = "no cold-item segment in this run"
        elif int(n) == 0:
            why = "no test example has an item unseen before the test period"
        elif pd.isna(r.get("auc_cold")):
            why = f"{int(n)} examples, all of one class: AUC undefined"
        else:
            why = ""
        rows.append({"variant": r["variant"], "cold examples": "-" if n is None or pd.isna(n) else int(n),
                     "AUC cold items [95% CI]": interval(r, "auc_cold"), "why empty": why})
    return ["## Cold items (no training-period interaction)", "", _markdown(rows), ""]


def paired_metrics_section(title: str, metrics: Mapping[str, float], prefix: str, left: str, right: str,
                           note: str, paired_prefix: str = "") -> list[str]:
    """Rows of metric: <right> (metrics[prefix + key]) against <left> (metrics[key]), with the paired interval
    over queries (metrics[paired_prefix + key], _lo, _hi) where the stage measured one."""
    rows = []
    for key, value in metrics.items():
        if not key.startswith(prefix) or "n_queries" in key:
            continue
        name = key[len(prefix):]
        if name not in metrics or not isinstance(value, (int, float)):
            continue
        after, before = float(metrics[name]), float(value)
        key = paired_prefix + name
        diff = interval(metrics, key, True) if paired_prefix and key in metrics else f"{after - before:+.4f}"
        rows.append({"metric": name, right: f"{before:.4f}", left: f"{after:.4f}", "difference [95% CI]": diff})
    return [f"## {title}", "", note, "", _markdown(rows), ""]


def lifetime_section(lifetime: Sequence[dict[str, Any]] | None, skipped: str | None, baseline: str) -> list[str]:
    if not lifetime:
        why = skipped or "the simulation stage did not run"
        return ["## Lifetime (simulated LT7 / LT14)", "", f"Not simulated: {why}.", ""]
    rows = [{"policy": r["policy"], "LT7 [95% CI]": interval(r, "lt7"), "LT14 [95% CI]": interval(r, "lt14"),
             f"ΔLT7 vs {baseline}": interval(r, "lt7_diff", True),
             f"ΔLT14 vs {baseline}": interval(r, "lt14_diff", True)}
            for r in lifetime]
    return ["## Lifetime (simulated LT7 / LT14)", "",
            f"Days active in the next 7 / 14 simulated days under each ranker as the policy; differences paired over "
            f"users against the strongest baseline ({baseline}).", "", _markdown(rows), ""]


def write_results(path: str | Path, title: str, mlflow_uri: str, ranking: Mapping[str, Any],
                  embedding_metrics: Mapping[str, float] | None = None, cre_metrics: Mapping[str, float] | None = None,
                  lifetime: Sequence[dict[str, Any]] | None = None, lifetime_skipped: str | None = None) -> Path:
    """results.md with every section (see the module docstring). ranking: the ranking stage's record."""
    table = results_table(ranking["table"], lifetime)
    baseline = ranking.get("baseline", "baseline")
    lines = [f"# Results: {title}", ""]
    lines += ranking_section(table, baseline)
    lines += attribution_section(ranking.get("attribution", []))
    lines += importance_section(ranking.get("importance", []))
    lines += cold_section(table)
    if embedding_metrics:
        lines += paired_metrics_section(
            "Embedding model against the text-only baseline (held-out pairs)", embedding_metrics, "baseline/",
            "embedding model", "text-only", "Retrieval on the content stage's held-out pairs; the text-only "
            "baseline embeds the same texts with the text encoder alone; intervals paired over queries.",
            "vs_baseline/")
    if cre_metrics:
        lines += paired_metrics_section(
            "CRE: before (content model) and after", cre_metrics, "before/", "after CRE", "content model",
            "The same evaluators on the content model and on the CRE model; intervals paired over queries where "
            "each query is scored on its own.", "vs_before/")
    lines += lifetime_section(lifetime, lifetime_skipped, baseline)
    lines += ["## Full table", "", table.to_markdown(index=False, floatfmt=".4f"), "",
              f"MLflow: `mlflow ui --backend-store-uri {mlflow_uri}`"]
    return write_text(path, "\n".join(lines) + "\n")


__all__ = ["interval", "results_table", "write_results"]
