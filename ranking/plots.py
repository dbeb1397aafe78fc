"""Figures for the ranking experiment (matplotlib object API with the Agg canvas: no display, no pyplot state).

- ``roc_figure``: ROC curves of all variants on one axes (scikit-learn ``RocCurveDisplay``), AUC in the legend.
- ``decile_table`` / ``decile_figure``: examples binned into deciles of predicted score; per decile the mean
  prediction, the observed positive rate (calibration) and the lift = observed rate / overall rate.
- ``importance_figure``: horizontal bar chart of a ranker's feature importance (named by what it measures).
- ``lift_figure``: forest plot of paired differences with their intervals.
- ``recipe_figures``: the content recipe's hard-negative F1 curves and balanced dataset weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import RocCurveDisplay

from recsys.io import atomic_file


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return Path(path)


def roc_figure(y, preds: dict[str, np.ndarray], title: str = "ROC (test period)") -> Figure:
    fig = _figure(5.5, 5)
    ax = fig.add_subplot(1, 1, 1)
    y = np.asarray(y)
    for i, (name, p) in enumerate(preds.items()):
        RocCurveDisplay.from_predictions(y, np.asarray(p), name=name, ax=ax, curve_kwargs={"linewidth": 1.2},
                                         plot_chance_level=i == len(preds) - 1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    return fig


def decile_table(y, p, n_bins: int = 10) -> pd.DataFrame:
    """DataFrame[decile (1 = lowest scores), n, mean_pred, pos_rate, lift]; ties may merge bins."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    ranks = pd.Series(p).rank(method="first").to_numpy()
    bins = np.minimum((ranks - 1) * n_bins // max(len(p), 1), n_bins - 1).astype(int) + 1
    df = pd.DataFrame({"decile": bins, "y": y, "p": p})
    t = df.groupby("decile").agg(n=("y", "size"), mean_pred=("p", "mean"), pos_rate=("y", "mean")).reset_index()
    base = y.mean() if len(y) else np.nan
    t["lift"] = t["pos_rate"] / base if base and base > 0 else np.nan
    return t


def decile_figure(table: pd.DataFrame, title: str) -> Figure:
    fig = _figure(10, 4)
    ax1 = fig.add_subplot(1, 2, 1)
    ax1.bar(table["decile"], table["lift"], color="tab:blue")
    ax1.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax1.set(xlabel="score decile (10 = highest)", ylabel="lift (pos rate / overall)", title=f"{title}: lift")
    ax2 = fig.add_subplot(1, 2, 2)
    hi = float(max(table["mean_pred"].max(), table["pos_rate"].max(), 1e-6)) * 1.05
    ax2.plot([0, hi], [0, hi], linestyle="--", color="grey", linewidth=0.8)
    ax2.plot(table["mean_pred"], table["pos_rate"], marker="o")
    ax2.set(xlabel="mean predicted probability", ylabel="observed positive rate",
            title=f"{title}: calibration by decile", xlim=(0, hi), ylim=(0, hi))
    return fig


def importance_figure(importance: pd.Series, title: str, top: int = 30) -> Figure:
    """`importance`: value per feature (index), named by what it measures (e.g. gain, permutation_auc_drop)."""
    d = importance.sort_values(ascending=False).head(top).iloc[::-1]
    fig = _figure(6, max(2.0, 0.3 * len(d) + 1))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(list(d.index), d.to_numpy(), color="tab:green")
    ax.set(xlabel=str(importance.name or "importance"), title=title)
    return fig


def lift_figure(table: pd.DataFrame, key: str, title: str) -> Figure:
    """Forest plot: each variant's `key` (a paired difference) with its `key`_lo/_hi interval, zero marked."""
    rows = table.dropna(subset=[key])
    fig = _figure(7, max(2.0, 0.35 * len(rows) + 1))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))[::-1]
    err = np.vstack([rows[key] - rows[f"{key}_lo"], rows[f"{key}_hi"] - rows[key]]).clip(min=0)
    ax.errorbar(rows[key], y, xerr=err, fmt="o", color="tab:blue", capsize=3)
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=0.8)
    label = rows["variant"] if "variant" in rows else rows.index
    ax.set_yticks(y, [str(v) for v in label])
    ax.set(xlabel=key, title=title)
    return fig


def recipe_figures(recipe: dict) -> dict[str, Figure]:
    """The content recipe's choices (the embedding stage's train_summary "recipe"): the F1 curve that chose each
    dataset's lambda* for hard negatives, and the balanced dataset weights; {artifact file: figure}."""
    out: dict[str, Figure] = {}
    mining = recipe.get("mining") or {}
    curves = [(stage, name, info) for stage, per in mining.items() for name, info in per.items() if "curve" in info]
    if curves:
        fig = _figure(5 * len(curves), 3.5)
        for i, (stage, name, info) in enumerate(curves):
            ax = fig.add_subplot(1, len(curves), i + 1)
            ax.plot(info["curve"]["threshold"], info["curve"]["f1"], color="tab:blue")
            ax.axvline(info["lambda"], color="tab:red", linestyle="--", linewidth=0.8)
            ax.set(xlabel="cosine threshold", ylabel="F1 vs known positives",
                   title=f"{stage}/{name}: lambda*={info['lambda']:.3f}, {info['dropped']} dropped")
        out["recipe/hard_negative_f1.png"] = fig
    balance = recipe.get("balance")
    if balance:
        fig = _figure(6, 3)
        ax = fig.add_subplot(1, 1, 1)
        ax.bar(balance["dataset"], balance["weight"], color="tab:green")
        for x, (w, m) in enumerate(zip(balance["weight"], balance["mean"])):
            ax.annotate(f"score {m:.3f}", (x, w), ha="center", va="bottom", fontsize=8)
        ax.set(ylabel="sampling weight", title="adaptive data balancing")
        out["recipe/balance_weights.png"] = fig
    return out
