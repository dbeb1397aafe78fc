"""MLflow tracking of the experiment (ranking/tracking.py): runs, params, metrics, artifacts, model reload."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ranking.dlrm import DLRMConfig
from ranking.experiment import run_experiment
from ranking.lgbm import LGBMRanker
from ranking.tracking import (
    RUN_KEY_TAG,
    load_logged_ranker,
    log_experiment,
    log_lifetime,
    log_run_metrics,
    mlflow_uri_for,
    tracking,
)
from ranking.variants import VariantSpec


def _pyfunc_predict(model_uri: str, mlflow_uri: str, frame: pd.DataFrame) -> np.ndarray:
    """What a user gets from MLflow alone: load the pyfunc, score an ordinary frame (only the model's columns)."""
    with tracking(mlflow_uri):
        model = mlflow.pyfunc.load_model(model_uri)
    columns = model.metadata.get_input_schema().input_names()
    return np.asarray(model.predict(frame[columns].copy()))


def test_runs_metrics_and_artifacts(experiment):
    res, uri, run_dir = experiment.result, experiment.uri, experiment.run_dir
    assert (run_dir / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("synthetic-test")
    assert exp.artifact_location.startswith((run_dir / "mlartifacts").resolve().as_uri())
    assert {a.path for a in client.list_artifacts(res.parent_run_id)} >= {"comparison.csv", "roc.png"}
    table = res.table.set_index("variant")
    for name, run_id in res.run_ids.items():
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == res.parent_run_id
        assert run.data.tags["variant"] == name and run.data.tags["dataset"] == "generated"
        m = run.data.metrics
        for k in ("auc", "auc_lo", "auc_hi", "gauc", "gauc_lo", "gauc_hi", "logloss", "logloss_lo", "logloss_hi",
                  "gauc_user_coverage"):
            assert m[k] == pytest.approx(table.loc[name, k])
        if name != "baseline":
            assert {"auc_diff_vs_baseline", "auc_diff_vs_baseline_lo", "auc_diff_vs_baseline_hi"} <= set(m)
        assert json.loads(run.data.params["features"]) == list(experiment.variants[name].features)
        assert run.data.params["ranker"] == "lgbm" and "lgbm.learning_rate" in run.data.params
        assert "fit.best_iteration" in run.data.params
        arts = {a.path for a in client.list_artifacts(run_id)}
        assert {"feature_importance.csv", "feature_importance.json", "feature_importance.png", "deciles.csv",
                "deciles.png", "roc.png"} <= arts
        with tracking(uri):
            info = mlflow.models.get_model_info(res.model_uris[name])
        assert info.signature.inputs.input_names() == list(experiment.variants[name].features)
        assert info.saved_input_example_info is not None
        png = client.download_artifacts(run_id, "deciles.png", str(run_dir / f"dl-{name}"))
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        imp = pd.read_csv(client.download_artifacts(run_id, "feature_importance.csv", str(run_dir / f"imp-{name}")))
        assert list(imp.columns) == ["feature", "gain"]
        assert set(imp["feature"]) == set(experiment.variants[name].features)


def test_logged_rankers_reload_and_predict_the_same(experiment, frames):
    res, uri = experiment.result, experiment.uri
    _, test = frames
    client = MlflowClient(tracking_uri=uri)
    for name in ("baseline", "match_sid"):
        assert client.get_run(res.run_ids[name]).data.tags["model_uri"] == res.model_uris[name]
        reloaded = load_logged_ranker(res.model_uris[name], uri)
        assert isinstance(reloaded, LGBMRanker)
        np.testing.assert_array_equal(reloaded.predict(test), res.predictions[name].to_numpy())
        plain = test.astype({"sid_0": "int32"})                              # an ordinary frame, ids as plain ints
        np.testing.assert_array_equal(_pyfunc_predict(res.model_uris[name], uri, plain),
                                      res.predictions[name].to_numpy())


def test_a_dlrm_variant_logs_and_reloads(frames, fast_lgbm, tmp_path):
    train, test = frames
    uri = mlflow_uri_for(tmp_path)
    variants = {"baseline": VariantSpec(("user_id", "cos_mean"), ("user_id",)),
                "dlrm_baseline": VariantSpec(("user_id", "cos_mean"), ("user_id",), ranker="dlrm")}
    res = run_experiment(train, test, variants, mlflow_uri=uri, experiment_name="dlrm-test",
                         ranker_configs={"lgbm": fast_lgbm, "dlrm": DLRMConfig(epochs=1, permutation_repeats=1)},
                         n_bootstrap=5)
    assert res.model_uris["dlrm_baseline"] == f"runs:/{res.run_ids['dlrm_baseline']}/dlrm"
    reloaded = load_logged_ranker(res.model_uris["dlrm_baseline"], uri)
    np.testing.assert_array_equal(reloaded.predict(test), res.predictions["dlrm_baseline"].to_numpy())
    np.testing.assert_array_equal(_pyfunc_predict(res.model_uris["dlrm_baseline"], uri, test),
                                  res.predictions["dlrm_baseline"].to_numpy())
    run = MlflowClient(tracking_uri=uri).get_run(res.run_ids["dlrm_baseline"])
    assert run.data.params["ranker"] == "dlrm" and "dlrm.embedding_dim" in run.data.params


def test_extra_metrics_and_lifetime_land_on_the_same_runs(experiment):
    res, uri = experiment.result, experiment.uri
    client = MlflowClient(tracking_uri=uri)
    logged = log_run_metrics(uri, res.parent_run_id, {"embedding.i2i/recall@10": 0.4, "bad": float("nan"),
                                                      "text": "x"})
    assert logged == {"embedding.i2i/recall_10": 0.4}
    assert client.get_run(res.parent_run_id).data.metrics["embedding.i2i/recall_10"] == 0.4
    lt = pd.DataFrame({"policy": ["baseline", "match", "random"], "LT7": [3.10, 3.25, 2.0],
                       "LT7_lo": [3.0, 3.1, 1.9], "LT7_hi": [3.2, 3.4, 2.1], "lt14": [5.0, 5.3, 3.0]})
    logged = log_lifetime(uri, "synthetic-test", res.run_ids, lt)
    assert set(logged) == {"baseline", "match"}
    m = client.get_run(res.run_ids["match"]).data.metrics
    assert m["lt7"] == pytest.approx(3.25) and m["lt7_lo"] == pytest.approx(3.1) and m["lt14"] == pytest.approx(5.3)
    assert "auc" in m                                                     # same run as the experiment
    assert "lt7" not in client.get_run(res.run_ids["match_sid"]).data.metrics
    long = pd.DataFrame({"policy": ["match_sid"], "metric": ["LT7"], "value": [3.3], "lo": [3.2], "hi": [3.4]})
    log_lifetime(uri, "synthetic-test", {"match_sid": res.run_ids["match_sid"]}, long)
    m = client.get_run(res.run_ids["match_sid"]).data.metrics
    assert (m["lt7"], m["lt7_lo"], m["lt7_hi"]) == pytest.approx((3.3, 3.2, 3.4))
    with pytest.raises(ValueError, match="no MLflow experiment"):
        log_lifetime(uri, "nope", res.run_ids, lt)


def _key_runs(uri: str, key: str, view: int = 1) -> list:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("rerun")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.{RUN_KEY_TAG} = '{key}'", run_view_type=view)


def test_logging_is_idempotent_per_run_key_and_a_crash_leaves_no_running_run(frames, fast_lgbm, tmp_path):
    train, test = frames
    uri = mlflow_uri_for(tmp_path)
    variants = {"baseline": VariantSpec(("item_positive_rate",)), "match": VariantSpec(("item_positive_rate",
                                                                                       "cos_mean"))}

    def run():
        return run_experiment(train, test, variants, mlflow_uri=uri, experiment_name="rerun",
                              ranker_configs={"lgbm": fast_lgbm}, n_bootstrap=5, run_key="stage-ranking")

    first = run()
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name("rerun").experiment_id
    # a kill -9 while logging leaves a RUNNING run of the key; a logging exception ends its runs FAILED
    orphan = client.create_run(exp_id, tags={RUN_KEY_TAG: "stage-ranking", "role": "variant"}).info.run_id
    unfitted = LGBMRanker(fast_lgbm)
    table = first.table.drop(columns="run_id")
    with pytest.raises(RuntimeError, match="not fitted"):
        log_experiment(uri, "rerun", table, {**first.models, "match": unfitted}, test["label"].to_numpy(),
                       first.predictions, {"n_train": len(train)}, run_key="stage-ranking", feature_frame=train)
    runs = _key_runs(uri, "stage-ranking")
    assert orphan not in {r.info.run_id for r in runs}                    # cleaned up before logging
    assert sorted((r.data.tags["mlflow.runName"], r.info.status) for r in runs if r.info.status != "FINISHED") == [
        ("comparison", "FAILED"), ("match", "FAILED")]                     # the crash ended its runs FAILED
    second = run()
    runs = _key_runs(uri, "stage-ranking")
    assert {r.info.run_id for r in runs} == {second.parent_run_id, *second.run_ids.values()}
    assert all(r.info.status == "FINISHED" for r in runs) and orphan not in {r.info.run_id for r in runs}
    models = client.search_logged_models([exp_id])
    assert sorted(m.source_run_id for m in models) == sorted(second.run_ids.values())
    np.testing.assert_array_equal(load_logged_ranker(second.model_uris["match"], uri).predict(test),
                                  first.predictions["match"].to_numpy())        # same data, seed: same model
    other = run_experiment(train, test, variants, mlflow_uri=uri, experiment_name="rerun",
                           ranker_configs={"lgbm": fast_lgbm}, n_bootstrap=5, run_key="another")
    assert len(_key_runs(uri, "stage-ranking")) == 3 and len(_key_runs(uri, "another")) == 3
    assert other.parent_run_id != second.parent_run_id
