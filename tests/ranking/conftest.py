"""Generated ranking data shared by the ranking tests (no Feast, no simulator).

- `dlrm_frames`: impressions whose label follows a known logistic law over dense features, ids and semantic
  IDs (the DLRM tests); `make_dlrm_frame` builds more of them (same features, categorical `DLRM_CATEGORICAL`).
- `frames` / `experiment`: example frames where a hidden user x item affinity drives the label and is visible
  only through the "match" feature `cos_mean` (so the match variant must beat the baseline), and one
  MLflow-tracked LightGBM experiment on them with the `fast_lgbm` config.
- `tiny_dataset`: a canonical dataset of 12 days (train 0-5, valid 6-8, test 9-11), synthetic or MovieLens-like.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ranking.lgbm import LGBMConfig

DLRM_CATEGORICAL = ["user_id", "item_id", "sid_0", "sid_1", "sid_2"]
N_USERS, N_ITEMS = 150, 80
FAST_LGBM = LGBMConfig(num_boost_round=300, early_stopping_rounds=20, learning_rate=0.1, seed=0)


def _dlrm_frame(n: int = 15000, n_users: int = 1500, n_items: int = 400, n_dense: int = 15, seed: int = 0,
                intercept: float = -1.5, item_effect: float = 1.0) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """Impressions in time order; logit = intercept + x0 - 0.5 x1 + item bias + user bias + 0.3 log1p(cnt).

    Returns (frame, features, true logit). f2 has 10% NaN (noise feature), cnt is a heavy-tailed count,
    sid_* are coarse codes of the item.
    """
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    items = (rng.zipf(1.3, n) % n_items).astype(np.int64)
    item_bias = np.random.default_rng(1000).normal(0, item_effect, n_items)  # fixed law across seeds
    user_bias = np.random.default_rng(2000).normal(0, 0.5, n_users)
    x = rng.normal(size=(n, n_dense))
    cnt = rng.poisson(np.exp(rng.normal(2, 1.5, n)))
    logit = intercept + x[:, 0] - 0.5 * x[:, 1] + item_bias[items] + user_bias[users] + 0.3 * np.log1p(cnt)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 86400 * 30, n)), unit="s")
    df = pd.DataFrame({"user_id": users + 10_000, "item_id": items + 500_000, "event_timestamp": ts, "label": y})
    for j in range(n_dense):
        df[f"f{j}"] = x[:, j]
    df.loc[rng.random(n) < 0.1, "f2"] = np.nan
    df["cnt"] = cnt
    df["sid_0"], df["sid_1"], df["sid_2"] = items // 100, items // 10, items % 7
    features = [f"f{j}" for j in range(n_dense)] + ["cnt"] + DLRM_CATEGORICAL
    return df, features, logit


@pytest.fixture(scope="session")
def make_dlrm_frame():
    return _dlrm_frame


@pytest.fixture(scope="session")
def dlrm_frames() -> SimpleNamespace:
    """train, test, features, categorical, true_logit (of test): the last 3000 of 15000 rows in time order are the
    test period."""
    df, features, logit = _dlrm_frame(n=15000)
    cut = 12000
    return SimpleNamespace(train=df.iloc[:cut].reset_index(drop=True), test=df.iloc[cut:].reset_index(drop=True),
                           features=features, categorical=list(DLRM_CATEGORICAL), true_logit=logit[cut:])


@pytest.fixture(scope="session")
def fast_lgbm() -> LGBMConfig:
    return FAST_LGBM


def _example_frame(n: int, start: str, seed: int, index_offset: int = 0) -> pd.DataFrame:
    """Examples with id, statistics, match and semantic-ID features; world fixed, events drawn by `seed`."""
    world = np.random.default_rng(123)
    item_q = world.normal(0, 1, N_ITEMS)
    user_b = world.normal(0, 0.5, N_USERS)
    ue, ie = world.normal(size=(N_USERS, 4)), world.normal(size=(N_ITEMS, 4))
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, N_USERS, n), rng.integers(0, N_ITEMS, n)
    affinity = (ue[u] * ie[i]).sum(1) / 2
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.6 * item_q[i] + user_b[u] + 1.5 * affinity)))).astype(np.int8)
    ts = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 7 * 86400, n)), unit="s")
    return pd.DataFrame({
        "user_id": u.astype(np.int64), "item_id": i.astype(np.int64), "event_timestamp": ts, "label": y,
        "item_impressions": rng.poisson(50, n).astype(float),
        "item_positive_rate": 1 / (1 + np.exp(-(item_q[i] - 1))) + rng.normal(0, 0.05, n),
        "user_positive_rate": 1 / (1 + np.exp(-(user_b[u] - 1))) + rng.normal(0, 0.05, n),
        "hist_len": rng.integers(0, 40, n).astype(float),
        "cos_mean": affinity + rng.normal(0, 0.3, n),
        "sid_0": ((ie[i, 0] > 0).astype(int) + 2 * (ie[i, 1] > 0)).astype(np.int64),
        "sid_recent_match_l0": rng.integers(0, 2, n).astype(float),
    }, index=pd.RangeIndex(index_offset, index_offset + n))


@pytest.fixture(scope="session")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = _example_frame(4000, "2024-01-01", seed=1)
    test = _example_frame(3000, "2024-02-01", seed=2, index_offset=1_000_000)  # disjoint index: traceable rows
    return train, test


@pytest.fixture(scope="session")
def experiment(frames, tmp_path_factory):
    """One MLflow-tracked run of the default variants: (result, mlflow uri, run dir, variants)."""
    from ranking.experiment import run_experiment
    from ranking.tracking import mlflow_uri_for
    from ranking.variants import default_variants

    train, test = frames
    run_dir = tmp_path_factory.mktemp("run")
    uri = mlflow_uri_for(run_dir)
    variants = default_variants(train.columns)
    res = run_experiment(train, test, variants, mlflow_uri=uri, experiment_name="synthetic-test",
                         run_tags={"dataset": "generated"}, extra_metrics_per_variant={"match": {"ndcg_fake": 0.5}},
                         ranker_configs={"lgbm": FAST_LGBM}, n_bootstrap=100, seed=0)
    return SimpleNamespace(result=res, uri=uri, run_dir=run_dir, variants=variants)


def _dataset(kind: str):
    from recsys.data.dataset import build_dataset
    from recsys.data.schema import PositiveRule
    from recsys.data.split import TemporalSplit

    items = pd.DataFrame({"item_id": np.arange(5, dtype=np.int64),
                          "created_at": pd.Timestamp("2023-01-01", tz="UTC")})
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(12), unit="D")
    inter = pd.DataFrame({"user_id": np.array([1, 2, 3] * 4, dtype=np.int64),
                          "item_id": np.arange(12, dtype=np.int64) % 5, "timestamp": ts})
    if kind == "synthetic":
        inter["like"] = np.array([1, 0] * 6, dtype=np.float32)
        labels, rule = {"like": "liked"}, PositiveRule("like", 1)
    else:
        inter["rating"] = np.array([5, 3.5, 4, 1, 4.5, 2] * 2, dtype=np.float32)
        labels, rule = {"rating": "stars"}, PositiveRule("rating", 4)
    split = TemporalSplit(ts[6], ts[9])                                  # train 0-5, valid 6-8, test 9-11
    return build_dataset(name=kind, source="test", items=items, interactions=inter, labels=labels,
                         positive=rule, split=split)


@pytest.fixture(scope="session")
def tiny_dataset():
    """kind ("synthetic" | "movielens") -> the 12-day dataset."""
    return _dataset
