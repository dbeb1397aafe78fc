"""The main job end to end on tiny settings, through the real CLI: every stage, MLflow, resumability, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest


def test_every_stage_finished(tiny_run):
    from recsys.pipeline import STAGES

    for stage in STAGES:
        assert (tiny_run / "stages" / f"{stage}.json").is_file(), stage
    assert (tiny_run / "results.md").is_file()
    assert (tiny_run / "feature_repo" / "feature_store.yaml").is_file()
    assert (tiny_run / "content_only" / "feature_repo" / "feature_store.yaml").is_file()


def test_results_table_and_mlflow_runs(tiny_run):
    import mlflow

    ranking = json.loads((tiny_run / "stages" / "ranking.json").read_text())
    table = pd.DataFrame(ranking["table"]).set_index("variant")
    simulated = {"baseline", "match", "match_sid", "match_content", "match_sid_content", "dlrm_baseline",
                 "dlrm_match_sid"}
    expected = simulated | {"sid", "sid_content"}  # drop-group references: ranked, not simulated
    assert set(table.index) == expected
    assert table["auc"].between(0.5, 1.0).all()
    assert (table["auc_lo"] <= table["auc"]).all() and (table["auc"] <= table["auc_hi"]).all()
    # the strongest baseline is the baseline with the best validation AUC; every lift is against it
    strongest = table.loc[["baseline", "dlrm_baseline"], "validation_auc"].idxmax()
    assert ranking["baseline"] == strongest and table.loc[strongest, "strongest_baseline"]
    assert (table["auc_diff_vs_baseline"].drop(strongest).round(12)
            == (table["auc"] - table.loc[strongest, "auc"]).drop(strongest).round(12)).all()
    assert "cf_score" in ranking["variants"]["baseline"]["features"]
    assert {r["group"] for r in ranking["attribution"]} == {"embedding match (cre)", "semantic IDs (cre)",
                                                             "embedding match (content)", "semantic IDs (content)"}
    sim = pd.DataFrame(json.loads((tiny_run / "stages" / "simulation.json").read_text())["summary"])
    assert simulated | {"random", "popularity"} == set(sim["policy"])
    report = (tiny_run / "results.md").read_text()
    for section in ("Rankers and lifts", "Feature-group attribution", "Permutation importance", "Cold items",
                    "text-only baseline", "CRE: before", "Lifetime (simulated"):
        assert f"## {section}" in report or section in report, section
    mlflow.set_tracking_uri(f"sqlite:///{tiny_run / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["synthetic"])
    variants = runs.loc[runs["tags.role"] == "variant"]
    assert set(variants["tags.variant"]) == expected
    assert variants["metrics.auc"].notna().all()
    assert variants.set_index("tags.variant").loc[sorted(simulated), "metrics.lt7"].notna().all()


def test_ranker_features_come_from_feast_services(tiny_run):
    ranking = json.loads((tiny_run / "stages" / "ranking.json").read_text())
    variants = ranking["variants"]
    assert "cos_mean" in variants["match"]["features"] and "cos_mean" not in variants["baseline"]["features"]
    assert "cos_mean_content" in variants["match_content"]["features"]
    assert "sid_0" in variants["match_sid"]["categorical"]
    assert variants["dlrm_match_sid"]["ranker"] == "dlrm"


def test_cold_items_are_embedded(tiny_run):
    items = pd.read_parquet(tiny_run / "dataset" / "items.parquet")
    emb = pd.read_parquet(tiny_run / "cre" / "item_embeddings.parquet")
    assert len(emb) == len(items)
    manifest = json.loads((tiny_run / "dataset" / "manifest.json").read_text())
    cold = items.loc[items["created_at"] >= pd.Timestamp(manifest["split"]["valid_end"]), "item_id"]
    assert len(cold) > 0
    assert set(cold) <= set(emb["item_id"])


def test_rerun_skips_finished_stages(cli, tiny_run):
    before = (tiny_run / "stages" / "ranking.json").read_text()
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(tiny_run)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("cached") >= 5
    assert (tiny_run / "stages" / "ranking.json").read_text() == before


def test_changed_config_reruns_the_stage_and_everything_downstream(cli, tiny_run):
    import yaml

    before = {s: json.loads((tiny_run / "stages" / f"{s}.json").read_text())["fingerprint"]
              for s in ("features", "ranking", "simulation")}
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(tiny_run), "--set", "ranking.bootstrap=30"],
               timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "ranking.bootstrap: 20 -> 30" in out
    assert "<ranking stage>" in out  # the simulation reruns because the ranking stage did
    after = {s: json.loads((tiny_run / "stages" / f"{s}.json").read_text())["fingerprint"] for s in before}
    assert after["features"] == before["features"]
    assert after["ranking"] != before["ranking"] and after["simulation"] != before["simulation"]
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["ranking"]["bootstrap"] == 30


def test_markers_of_later_stages_built_from_other_settings_are_set_aside(cli, tiny_run):
    """`--stage features` with a new ranking setting: config.yaml then describes every artefact left beside it."""
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(tiny_run), "--stage", "features",
                "--set", "ranking.bootstrap=40"], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = tiny_run / "stages"
    assert not (stages / "ranking.json").exists() and (stages / "ranking.stale.json").is_file()
    assert not (stages / "simulation.json").exists() and (stages / "simulation.stale.json").is_file()
    assert not (tiny_run / "results.md").exists() and (tiny_run / "results.stale.md").is_file()
    assert (stages / "features.json").is_file()


def test_feature_commands_and_serving_defaults(cli, tiny_run):
    proc = cli(["features", "materialize", "--run-dir", str(tiny_run)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rows" in proc.stdout
    proc = cli(["features", "serve", "--run-dir", str(tiny_run), "--user", "1", "--candidates", "1,2,987654"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "unknown_item" in proc.stdout and "True" in proc.stdout


def test_bad_config_names_the_key_and_exits_2(cli, tmp_path):
    proc = cli(["run", "--run-dir", str(tmp_path / "r"), "--set", "ranking.lgbm.num_leavs=8"])
    assert proc.returncode == 2
    assert "ranking.lgbm.num_leavs" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("embedding:\n  train:\n    batch_size: one\n")
    proc = cli(["run", "--config", str(bad), "--run-dir", str(tmp_path / "r")])
    assert proc.returncode == 2 and "embedding.train.batch_size" in proc.stdout


def test_inconsistent_prefix_and_dimension_exit_2_naming_both_keys(cli, tmp_path):
    proc = cli(["run", "--run-dir", str(tmp_path / "r"), "--set", "features.interests.prefix_dim=100"])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())  # rich may wrap the message
    assert "features.interests.prefix_dim" in out and "embedding.train.model.matryoshka_dims" in out
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("levels", [2, 4])
def test_semantic_id_levels_flow_into_features(cli, tmp_path, levels):
    """embedding.semantic_ids.levels is the one source: the item table, the Feast schema, the SID match features
    and what the online store serves all have `levels` levels (teachers and CRE off: this is about features)."""
    from feast import FeatureStore

    run_dir = tmp_path / "run"
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--stage", "features",
                 "--set", f"embedding.semantic_ids.levels={levels}", "--set", "teachers.enabled=false",
                 "--set", "embedding.cre.enabled=false", "--set", "features.collaborative=false"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sids = [f"sid_{lvl}" for lvl in range(levels)]
    emb = pd.read_parquet(run_dir / "embedding" / "item_embeddings.parquet")
    assert sorted(c for c in emb.columns if c.startswith("sid_")) == sids
    store = FeatureStore(repo_path=str(run_dir / "feature_repo"))
    item_view = store.get_feature_view("item_embedding")
    assert sorted(f.name for f in item_view.features if f.name.startswith("sid_")) == sids
    on_demand = [f.name for v in store.list_on_demand_feature_views() for f in v.features]
    sid_matches = sorted(f for f in on_demand if f.startswith("sid_recent_match_l"))
    assert sid_matches == [f"sid_recent_match_l{lvl}" for lvl in range(levels)]
    proc = cli(["features", "serve", "--run-dir", str(run_dir), "--user", "1", "--candidates", "1,2,3"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"sid_recent_match_l{levels - 1}" in proc.stdout and f"sid_recent_match_l{levels}" not in proc.stdout


def test_data_prepare_movielens_cli(cli, movielens_dir, tmp_path):
    out = tmp_path / "ml"
    proc = cli(["data", "prepare", "--source", "movielens", "--path", str(movielens_dir), "--posters",
                 str(movielens_dir / "posters"), "--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for expected in ("610", "9742", "100836", "9517"):
        assert expected in proc.stdout


def test_data_prepare_bad_input_exits_2(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame({"item_id": [1, 1], "created_at": ["2026-01-01", "2026-01-02"]}).to_parquet(src / "items.parquet")
    pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": ["2026-01-03"], "click": [1]}).to_parquet(
        src / "interactions.parquet")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  source: parquet\n  path: {src}\n  positive: {{column: click, min_value: 1}}\n")
    proc = cli(["data", "prepare", "--config", str(cfg), "--out", str(tmp_path / "out")])
    assert proc.returncode == 2
    assert "items.parquet" in proc.stdout and "duplicate item id" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_forced_cre_with_new_settings_trains_from_scratch(cli, tiny_run):
    """--force STAGE discards that stage's checkpoint: a changed config reruns instead of refusing to resume.
    (Last in this module: it rewrites the cre stage of the shared run.)"""
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(tiny_run), "--stage", "cre",
                 "--force", "cre", "--set", "embedding.cre.id2item_steps=4"], timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cre = json.loads((tiny_run / "stages" / "cre.json").read_text())
    assert cre["metrics"]["train/steps"] == 14.0


def test_without_a_text_encoder_the_content_stage_trains_item_pairs_only(cli, tmp_path):
    """Query and label texts need the text encoder: with it off (the modality.text ablation) the content stage
    trains and evaluates i2i alone instead of feeding 384-d query tokens to a model built without text."""
    run_dir = tmp_path / "run"
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--stage", "embedding",
                "--set", "encoders.text.enabled=false"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run_dir / "embedding" / "train_summary.json").read_text())
    assert set(summary["pairs"]) == {"i2i"}
    assert "i2i/recall@10" in summary["metrics"] and "q2i/recall@10" not in summary["metrics"]
