"""The implicit-feedback path end to end on a positives-only copy of MovieLens-small (rating >= 4 kept, nothing
else): the dataset is recognised as implicit, the rankers train and evaluate on sampled negatives, and the AUCs
are real (finite, both classes present), not the NaN table and log loss 0 a positives-only log used to give.

To fit the test budget the copy keeps the first 120 users' ratings (and their movies), text only (no posters).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow
USERS = 120


@pytest.fixture(scope="module")
def positives_only(movielens_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ml-implicit")
    ratings = pd.read_csv(movielens_dir / "ratings.csv")
    kept = ratings.loc[(ratings["rating"] >= 4) & (ratings["userId"] <= USERS)]
    kept.to_csv(out / "ratings.csv", index=False)
    movies = pd.read_csv(movielens_dir / "movies.csv")
    movies.loc[movies["movieId"].isin(kept["movieId"])].to_csv(out / "movies.csv", index=False)
    return out


def test_positives_only_movielens_runs_end_to_end_with_sampled_negatives(positives_only, cli, tmp_path):
    run = tmp_path / "run"
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(run), "--set", "data.source=movielens",
                "--set", f"data.path={positives_only}", "--set", "simulation.enabled=false",
                "--set", "ranking.rankers=[lgbm]"], timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    manifest = json.loads((run / "dataset" / "manifest.json").read_text())
    assert manifest["feedback"] == "implicit"
    ranking = json.loads((run / "stages" / "ranking.json").read_text())
    table = pd.DataFrame(ranking["table"]).set_index("variant")
    assert np.isfinite(table["auc"]).all() and table["auc"].between(0.5, 1.0).all(), table["auc"]
    assert (table["logloss"] > 0).all()
    # the frames hold real negatives, as many per positive as configured, and say how they were made
    test = pd.read_parquet(run / "ranking" / "test_frame.parquet")
    n_pos, n_neg = int((test["label"] == 1).sum()), int((test["label"] == 0).sum())
    assert n_pos > 0 and n_neg > 0
    assert "negatives" in ranking and ranking["negatives"]["strategy"], ranking.get("negatives")
    assert "sampled" in " ".join(proc.stdout.split()).lower()
