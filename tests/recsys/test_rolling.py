"""Rolling-origin folds: the cut-offs, the fold's view of the data, leakage (nothing from a fold's evaluation
window reaches any of its fitted inputs), and the pooled numbers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from ranking.metrics import METRICS, paired_bootstrap_diff, pooled_bootstrap
from recsys.config import RunConfig
from recsys.config_io import load_model
from recsys.data.dataset import fold_view, load_dataset, write_tables
from recsys.data.split import rolling_folds
from recsys.errors import ConfigError
from recsys.pipeline import PREDICTIONS, RunResult, run_pipeline
from recsys.rolling import fold_config, pool_folds


def load_config(overrides: list[str]) -> RunConfig:
    return load_model(RunConfig, "configs/tiny.yaml", overrides)


def test_fold_cut_offs_are_consecutive_windows_of_the_events():
    ts = pd.Series(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(1000), unit="h"))
    folds = rolling_folds(ts, folds=3, fold_fraction=0.2, valid_fraction=0.1)
    counts = [((ts >= f.valid_end) & (ts < f.test_end)).sum() for f in folds]
    assert counts == [200, 200, 200]                                       # each window holds its share
    assert [((ts >= f.train_end) & (ts < f.valid_end)).sum() for f in folds] == [100, 100, 100]
    assert [(ts < f.train_end).sum() for f in folds] == [300, 500, 700]    # expanding training data
    assert all(a.test_end == b.valid_end for a, b in zip(folds, folds[1:]))  # windows tile the end of the data
    assert folds[-1].test_end > ts.max()
    with pytest.raises(ConfigError, match="must be below 1"):
        rolling_folds(ts, folds=5, fold_fraction=0.2, valid_fraction=0.1)


def test_fold_config_and_view(tiny_run):
    cfg = load_config(["data.split.folds=2", "data.split.test_fraction=0.2"])
    assert [fold_config(cfg, k).simulation.enabled for k in (0, 1)] == [False, True]
    assert fold_config(cfg, 1).data.split.fold == 1 and cfg.data.split.fold is None
    with pytest.raises(ValueError, match="fold 2 does not exist"):
        fold_config(cfg, 2)
    ds = load_dataset(tiny_run / "dataset")
    folds = rolling_folds(ds.interactions["timestamp"], 2, 0.2, cfg.data.split.valid_fraction)
    views = [fold_view(ds, f) for f in folds]
    for f, v in zip(folds, views):
        assert v.interactions["timestamp"].max() < f.test_end and v.split == f.split
        assert len(v.split.test(v.interactions)) == ((ds.interactions["timestamp"] >= f.valid_end)
                                                     & (ds.interactions["timestamp"] < f.test_end)).sum()
    assert len({v.manifest.content_hash for v in views} | {ds.manifest.content_hash}) == 3


def test_nothing_from_a_folds_window_reaches_its_fitted_inputs(tmp_path):
    """Fold 0 of 2 on the real events and on events whose evaluation window and everything after it were
    rewritten (labels flipped, items shuffled): every model, vector table and feature row the fold fits or builds
    before its window is bit-identical."""
    cfg = load_config(["data.split.folds=2", "data.split.test_fraction=0.2",
                                            "embedding.cre.seq2item_steps=4", "embedding.cre.id2item_steps=4",
                                            "embedding.train.stages=[{name: content, steps: 8}]"])
    fold = fold_config(cfg, 0)
    run_pipeline(fold, tmp_path / "a" / "fold", stages=["features"], shared_dir=tmp_path / "a")
    ds = load_dataset(tmp_path / "a" / "dataset")
    cut = rolling_folds(ds.interactions["timestamp"], 2, 0.2, cfg.data.split.valid_fraction)[0].valid_end
    later = ds.interactions["timestamp"] >= cut
    assert later.sum() > 100
    rng = np.random.default_rng(0)
    changed = ds.interactions.copy()
    changed.loc[later, "like"] = 1.0 - changed.loc[later, "like"]
    changed.loc[later, "item_id"] = rng.permutation(changed.loc[later, "item_id"].to_numpy())
    ds.interactions = changed
    shutil.copytree(tmp_path / "a" / "dataset", tmp_path / "b" / "dataset")  # media and world beside the tables
    write_tables(ds, tmp_path / "b" / "dataset")
    shutil.copytree(tmp_path / "a" / "cache", tmp_path / "b" / "cache")
    run_pipeline(fold, tmp_path / "b" / "fold", stages=["features"], shared_dir=tmp_path / "b")

    a, b = tmp_path / "a" / "fold", tmp_path / "b" / "fold"
    for model in ("embedding/model/model.safetensors", "cre/model/model.safetensors"):
        wa, wb = load_file(a / model), load_file(b / model)
        assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa), model

    def before(f: pd.DataFrame) -> pd.DataFrame:  # rows a point-in-time join at an example before the cut can use
        return f.loc[f["event_timestamp"] <= cut].reset_index(drop=True)

    def read(path):  # model_version names the data it came from (its content hash), which differs by design
        return pd.read_parquet(path).drop(columns="model_version", errors="ignore")

    for table in ("teachers/id/item_embeddings.parquet", "teachers/id/user_embeddings.parquet",
                  "teachers/sequence/item_embeddings.parquet"):
        pd.testing.assert_frame_equal(read(a / table), read(b / table), check_exact=True)
    for table in ("embedding/item_embeddings.parquet", "cre/item_embeddings.parquet"):
        ta, tb = read(a / table), read(b / table)
        pd.testing.assert_frame_equal(ta.drop(columns="event_timestamp"), tb.drop(columns="event_timestamp"),
                                      check_exact=True)  # vectors and semantic IDs of every item
        pd.testing.assert_frame_equal(before(ta), before(tb), check_exact=True)  # availability up to the cut
    for source in ("item_embedding", "user_interests", "item_stats", "user_stats", "user_cf", "item_cf"):
        fa, fb = (read(r / "feature_repo" / "data" / f"{source}.parquet") for r in (a, b))
        assert len(before(fa)) > 0, source
        pd.testing.assert_frame_equal(before(fa), before(fb), check_exact=True)
    # ... and the fold really saw different events in its window
    assert not json.loads((a / "stages" / "data.json").read_text()) == json.loads((b / "stages" / "data.json")
                                                                                      .read_text())


def test_pooled_bootstrap_is_the_mean_of_per_fold_paired_differences():
    rng = np.random.default_rng(1)
    folds = []
    for _ in range(3):
        n = 400
        y = (rng.random(n) < 0.3).astype(float)
        users = rng.integers(0, 40, n)
        p_a, p_b = y + rng.normal(0, 1.0, n), y + rng.normal(0, 1.5, n)
        folds.append((y, p_a, p_b, users))
    auc = METRICS["auc"]
    value, lo, hi = pooled_bootstrap(auc, folds, n=100, seed=0)
    per_fold = [paired_bootstrap_diff(auc, y, a, b, u, n=100, seed=0)[0] for y, a, b, u in folds]
    assert value == pytest.approx(np.mean(per_fold)) and lo < value < hi and lo > 0
    single = pooled_bootstrap(auc, folds[:1], n=100, seed=0)
    assert single[0] == pytest.approx(per_fold[0])
    plain = pooled_bootstrap(auc, [(y, a, None, u) for y, a, _, u in folds], n=50, seed=0)
    assert plain[0] == pytest.approx(np.mean([auc(y, a) for y, a, _, _ in folds]))


def test_pool_folds_uses_each_folds_strongest_baseline(tmp_path):
    rng = np.random.default_rng(2)
    results = []
    for k, strongest in enumerate(("baseline", "dlrm_baseline")):
        n = 300
        y = (rng.random(n) < 0.4).astype(float)
        pred = pd.DataFrame({"user_id": rng.integers(0, 30, n), "label": y,
                             "baseline": y + rng.normal(0, 2, n), "dlrm_baseline": y + rng.normal(0, 1.5, n),
                             "match": y + rng.normal(0, 1, n), "match_content": y + rng.normal(0, 1.2, n)})
        run_dir = tmp_path / f"fold_{k}"
        (run_dir / "ranking").mkdir(parents=True)
        pred.to_parquet(run_dir / "ranking" / PREDICTIONS)
        table = [{"variant": v, "ref_variant": "match_content" if v == "match" else None,
                  "ranker_baseline": "baseline" if v.startswith("match") else None}
                 for v in ("baseline", "dlrm_baseline", "match", "match_content")]
        results.append(RunResult(run_dir, {"ranking": {"baseline": strongest, "table": table, "variants": {
            v: {} for v in ("baseline", "dlrm_baseline", "match", "match_content")}}}, {}))
    pooled = pool_folds(results, n_bootstrap=50).set_index("variant")
    preds = [pd.read_parquet(r.run_dir / "ranking" / PREDICTIONS) for r in results]
    auc = METRICS["auc"]
    want = np.mean([auc(p["label"], p["match"]) - auc(p["label"], p[b]) for p, b in zip(preds, ("baseline",
                                                                                              "dlrm_baseline"))])
    assert pooled.loc["match", "auc_diff_vs_baseline"] == pytest.approx(want)
    assert pooled.loc["match", "strongest_baselines"] == "baseline,dlrm_baseline"
    assert not np.isnan(pooled.loc["match", "auc_diff_vs_ref"]) and np.isnan(pooled.loc["baseline", "auc_diff_vs_ref"])
    own = np.mean([auc(p["label"], p["match"]) - auc(p["label"], p["baseline"]) for p in preds])
    assert pooled.loc["match", "auc_diff_vs_ranker"] == pytest.approx(own)


def test_rolling_config_is_validated():
    with pytest.raises(ValueError, match="folds x test_fraction must be < 1"):
        RunConfig.model_validate({"data": {"split": {"folds": 6, "test_fraction": 0.15}}})


def test_one_fold_runs_alone_from_the_command_line(cli, tmp_path):
    """`--set data.split.fold=K` runs that fold's main job in --run-dir (here only its data stage), not every fold."""
    args = ["run", "--config", "configs/tiny.yaml", "--run-dir", str(tmp_path / "f1"), "--stage", "data",
            "--set", "data.split.folds=2", "--set", "data.split.test_fraction=0.2"]
    rolling = cli(args)
    assert rolling.returncode == 2 and "every fold runs whole" in rolling.stdout + rolling.stderr
    one = cli([*args, "--set", "data.split.fold=1"])
    assert one.returncode == 0, one.stdout + one.stderr
    assert (tmp_path / "f1" / "stages" / "data.json").is_file() and not (tmp_path / "f1" / "folds").exists()
