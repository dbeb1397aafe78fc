"""The bad-input matrix: every input the project cannot use ends with exit status 2 and one message that names
the key, file, column, row or id, never a traceback, and leaves nothing half-written behind.

The CLI runs in-process (typer's CliRunner on the real app), so the matrix pays the imports once; the few cases
that need a finished run directory share the session's tiny run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recsys.cli import app


@dataclass(frozen=True)
class Case:
    args: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    creates_nothing: str | None = None  # a path (relative to tmp) that must not exist afterwards


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _run_args(*sets: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "--run-dir", str(tmp / "run"), *[a for s in sets for a in ("--set", s)]]


def _config(text: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "--run-dir", str(tmp / "run"), "--config", str(_write(tmp / "c.yaml", text))]


# ---- canonical parquet sources -----------------------------------------------------------------------------------
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _items(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"item_id": np.arange(1, n + 1), "created_at": [T0] * n,
                         "title": [f"item {i}" for i in range(1, n + 1)]})


def _events(n_users: int = 12, per_user: int = 20, days: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    return pd.DataFrame({"user_id": np.repeat(np.arange(1, n_users + 1), per_user),
                         "item_id": rng.integers(1, 31, n),
                         "timestamp": T0 + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s"),
                         "click": (rng.random(n) < 0.4).astype(float)})


def _parquet_source(items: pd.DataFrame | None = None, events: pd.DataFrame | None = None,
                    positive: str = "{column: click, min_value: 1}") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        src = tmp / "src"
        src.mkdir(parents=True, exist_ok=True)
        (_items() if items is None else items).to_parquet(src / "items.parquet")
        (_events() if events is None else events).to_parquet(src / "interactions.parquet")
        cfg = _write(tmp / "c.yaml", f"data:\n  source: parquet\n  path: {src}\n  positive: {positive}\n")
        return ["data", "prepare", "--config", str(cfg), "--out", str(tmp / "out")]
    return build


def _events_with(**changes) -> pd.DataFrame:
    ev = _events()
    for col, fn in changes.items():
        ev[col] = fn(ev)
    return ev


def _movielens_copy(mutate: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        src = tmp / "ml"
        src.mkdir()
        _write(src / "movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,Heat (1995),Action\n")
        _write(src / "ratings.csv", "userId,movieId,rating,timestamp\n" + "".join(
            f"{u},{1 + (u + k) % 2},{(u + k) % 5 + 1}.0,{946684800 + 86400 * (u * 7 + k)}\n"
            for u in range(1, 20) for k in range(6)))
        mutate(src)
        return ["data", "prepare", "--source", "movielens", "--path", str(src), "--out", str(tmp / "out")]
    return build


def _file(tmp: Path, name: str, text: str = "") -> str:
    return str(_write(tmp / name, text))


def _without_items(tmp: Path) -> list[str]:
    args = _parquet_source()(tmp)
    (tmp / "src" / "items.parquet").unlink()
    return args


def _corrupt(tmp: Path) -> list[str]:
    args = _parquet_source()(tmp)
    (tmp / "src" / "interactions.parquet").write_bytes(b"PAR1 this is not a parquet file")
    return args


CASES: dict[str, Case] = {
    # ---- config keys and values (recsys run) ------------------------------------------------------------------
    "unknown key": Case(_run_args("ranking.lgbm.num_leavs=8"), ("ranking.lgbm.num_leavs", "unknown key")),
    "unknown section": Case(_run_args("rankng.bootstrap=30"), ("rankng", "unknown key")),
    "string for an int": Case(_run_args("embedding.train.batch_size=one"), ("embedding.train.batch_size",)),
    "int below its minimum": Case(_run_args("embedding.train.batch_size=1"), ("embedding.train.batch_size",)),
    "negative seed": Case(_run_args("seed=-1"), ("seed",)),
    "non-integer seed": Case(_run_args("seed=abc"), ("seed",)),
    "unknown device": Case(_run_args("device=gpu"), ("device",)),
    "cuda without a GPU": Case(_run_args("device=cuda:7"), ("device", "cuda:7")),
    "malformed YAML value": Case(_run_args("embedding.train.stages=[1"), ("embedding.train.stages=[1", "YAML")),
    "override without =": Case(_run_args("ranking.bootstrap"), ("ranking.bootstrap", "key.sub=value")),
    "override with an empty key": Case(_run_args("=3"), ("section.key",)),
    "override with an empty key part": Case(_run_args("ranking..bootstrap=3"), ("ranking..bootstrap",)),
    "a value for a section": Case(_run_args("embedding=3"), ("embedding",)),
    "a key below a value": Case(_run_args("seed.x=3"), ("seed",)),
    "prefix not a trained prefix": Case(_run_args("features.interests.prefix_dim=100"),
                                        ("features.interests.prefix_dim", "embedding.train.model.matryoshka_dims")),
    "prefix zero": Case(_run_args("features.interests.prefix_dim=0"), ("features.interests.prefix_dim",)),
    "zero SID levels": Case(_run_args("embedding.semantic_ids.levels=0"), ("embedding.semantic_ids.levels",)),
    "CRE pairs set apart": Case(_run_args("embedding.cre.pairs.i2i_window=5"),
                                ("embedding.cre.pairs", "embedding.train.pairs")),
    "unknown ranker": Case(_run_args("ranking.rankers=[xgboost]"), ("ranking.rankers",)),
    "too few bootstrap resamples": Case(_run_args("ranking.bootstrap=5"), ("ranking.bootstrap",)),
    "unknown online store": Case(_run_args("features.online_store=memcached"), ("features.online_store",)),
    "unknown offline store": Case(_run_args("features.offline_store=bigquery"), ("features.offline_store",)),
    "unknown data source": Case(_run_args("data.source=csv"), ("data.source",)),
    "negative learning rate": Case(_run_args("embedding.train.lr=-1"), ("embedding.train.lr",)),
    "min_lr above lr": Case(_run_args("embedding.train.min_lr=0.5"), ("min_lr", "lr")),
    "empty world": Case(_run_args("world.n_items=0"), ("world.n_items",)),
    "too few training rows": Case(_run_args("ranking.max_train_rows=10"), ("ranking.max_train_rows",)),
    "unknown retrieval engine": Case(_run_args("ranking.retrieval_engine=sql"), ("ranking.retrieval_engine",)),
    "zero CRE threads": Case(_run_args("embedding.cre.num_threads=0"), ("embedding.cre.num_threads",)),
    "config file missing": Case(lambda tmp: ["run", "-r", str(tmp / "run"), "-c", str(tmp / "nope.yaml")],
                                ("nope.yaml", "not found")),
    "config file not YAML": Case(_config("ranking: [bootstrap: 3\n"), ("c.yaml", "not valid YAML")),
    "config file a list": Case(_config("- a\n- b\n"), ("c.yaml", "mapping")),
    "config file unknown key": Case(_config("ranking:\n  bootstap: 30\n"), ("ranking.bootstap", "unknown key")),
    "config file bad nested value": Case(_config("embedding:\n  train:\n    batch_size: one\n"),
                                         ("embedding.train.batch_size",)),
    # ---- CLI arguments --------------------------------------------------------------------------------------
    "misspelt --stage": Case(lambda tmp: ["run", "-r", str(tmp / "run"), "--stage", "trainign"],
                             ("trainign", "stage"), creates_nothing="run"),
    "misspelt --force": Case(lambda tmp: ["run", "-r", str(tmp / "run"), "--force", "rankng"],
                             ("rankng", "stage"), creates_nothing="run"),
    "run directory is a file": Case(lambda tmp: ["run", "-r", _file(tmp, "afile"), "--stage", "data"],
                                    ("afile", "file")),
    "run directory not writable": Case(lambda tmp: ["run", "-r", "/sys/kernel/recsys-run", "--stage", "data"],
                                       ("/sys/kernel/recsys-run",)),
    "unknown teacher": Case(lambda tmp: ["teachers", "--dataset", str(tmp), "--out", str(tmp / "t"),
                                         "--teacher", "graph"], ("--teacher", "graph")),
    "teachers on a missing dataset": Case(lambda tmp: ["teachers", "--dataset", str(tmp / "nods"), "--out",
                                                       str(tmp / "t")], ("nods",)),
    "summary of a missing dataset": Case(lambda tmp: ["data", "summary", str(tmp / "nods")], ("nods",)),
    "summary of a folder that is no dataset": Case(lambda tmp: ["data", "summary", str(tmp)], ("manifest.json",)),
    "unknown source option": Case(lambda tmp: ["data", "prepare", "--source", "csv", "--out", str(tmp / "o")],
                                  ("data.source",)),
    "materialize without a features stage": Case(lambda tmp: ["features", "materialize", "-r", str(tmp / "norun")],
                                                 ("norun",)),
    # ---- data files ---------------------------------------------------------------------------------------------
    "duplicate item ids": Case(_parquet_source(items=pd.concat([_items(), _items().head(1)])),
                               ("items.parquet", "duplicate item id"), creates_nothing="out"),
    "items file missing": Case(_without_items, ("items.parquet",), creates_nothing="out"),
    "positive column missing": Case(_parquet_source(positive="{column: purchase, min_value: 1}"),
                                    ("purchase",), creates_nothing="out"),
    "no positive interaction": Case(_parquet_source(events=_events_with(click=lambda e: 0.0)),
                                    ("click", "positive"), creates_nothing="out"),
    "identical timestamps": Case(_parquet_source(events=_events_with(timestamp=lambda e: T0)),
                                 ("split",), creates_nothing="out"),
    "timestamps within one day": Case(_parquet_source(events=_events_with(
        timestamp=lambda e: T0 + pd.to_timedelta(np.arange(len(e)), unit="s"))), ("split",), creates_nothing="out"),
    "non-numeric user ids": Case(_parquet_source(events=_events_with(user_id=lambda e: "u" + e["user_id"].astype(str))),
                                 ("user_id",), creates_nothing="out"),
    "unparsable timestamps": Case(_parquet_source(events=_events_with(timestamp=lambda e: "yesterday")),
                                  ("timestamp",), creates_nothing="out"),
    "corrupt parquet": Case(_corrupt, ("interactions.parquet",), creates_nothing="out"),
    "zero-byte ratings.csv": Case(_movielens_copy(lambda src: _write(src / "ratings.csv", "")), ("ratings.csv",),
                                  creates_nothing="out"),
    "ratings.csv without a rating column": Case(_movielens_copy(lambda src: _write(
        src / "ratings.csv", "userId,movieId,timestamp\n1,1,946684800\n")), ("ratings.csv", "rating"),
        creates_nothing="out"),
    "non-numeric movie ids": Case(_movielens_copy(lambda src: _write(
        src / "ratings.csv", "userId,movieId,rating,timestamp\n1,x,4.0,946684800\n")), ("ratings.csv", "movieId"),
        creates_nothing="out"),
    "movies.csv missing": Case(_movielens_copy(lambda src: (src / "movies.csv").unlink()), ("movies.csv",),
                               creates_nothing="out"),
    "MovieLens folder missing": Case(lambda tmp: ["data", "prepare", "--source", "movielens", "--path",
                                                  str(tmp / "noml"), "--out", str(tmp / "out")], ("noml",),
                                     creates_nothing="out"),
    "--out is a file": Case(lambda tmp: _parquet_source()(tmp)[:-1] + [_file(tmp, "outfile")], ("outfile",)),
    # ---- serving ------------------------------------------------------------------------------------------------
    "no feature repository": Case(lambda tmp: ["features", "serve", "-r", str(tmp / "norepo"), "--user", "1",
                                               "--candidates", "1,2"], ("norepo",), creates_nothing="norepo"),
    "empty candidate list": Case(lambda tmp: ["features", "serve", "-r", str(tmp), "--user", "1", "--candidates",
                                              " , "], ("--candidates",)),
    "non-integer candidate": Case(lambda tmp: ["features", "serve", "-r", str(tmp), "--user", "1", "--candidates",
                                               "1,b,3"], ("--candidates", "'b'")),
    "negative candidate": Case(lambda tmp: ["features", "serve", "-r", str(tmp), "--user", "1", "--candidates",
                                            "1,-2"], ("--candidates", "'-2'")),
    "non-integer user": Case(lambda tmp: ["features", "serve", "-r", str(tmp), "--user", "abc", "--candidates",
                                          "1"], ("--user",)),
    "materialize end not a time": Case(lambda tmp: ["features", "materialize", "-r", str(tmp), "--end",
                                                    "soon"], ("--end", "soon")),
}


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_a_message(runner, name, tmp_path):
    case = CASES[name]
    args = case.args(tmp_path)
    result = runner.invoke(app, args, env={"COLUMNS": "400"})
    output = " ".join(result.output.split())
    assert result.exit_code == 2, f"{name}: exit {result.exit_code}\n{result.output[-3000:]}\n{result.exception!r}"
    assert "Traceback" not in result.output, result.output[-3000:]
    for needle in case.expect:
        assert needle in output, f"{name}: {needle!r} not in the message:\n{output[-2000:]}"
    if case.creates_nothing:
        assert not (tmp_path / case.creates_nothing).exists(), f"{name} left {case.creates_nothing} behind"


def test_unknown_feature_service_names_it(runner, tiny_run):
    result = runner.invoke(app, ["features", "serve", "-r", str(tiny_run), "--user", "1", "--candidates", "1,2",
                                 "--service", "ranking_nope_v9"])
    assert result.exit_code == 2, result.output[-3000:]
    assert "ranking_nope_v9" in " ".join(result.output.split())
