"""Materialization's row selection: the latest source row per entity in a window, read from only the row groups
that hold one, equal to a pandas reference on a source with many row groups, ties and out-of-window rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.online_write import latest_rows


@pytest.fixture(scope="module")
def source(fw, tmp_path_factory):
    items, ev = fw.make_world()
    repo = fw.build_repo(tmp_path_factory.mktemp("run"), items, ev)
    view = repo.store.get_feature_view("item_stats")
    rng = np.random.default_rng(0)
    n = 5000
    df = pd.DataFrame({"item_id": rng.integers(0, 300, n).astype(np.int64),
                       "event_timestamp": (fw.START + pd.to_timedelta(rng.integers(0, 40, n), unit="D")).as_unit("us"),
                       "item_impressions": np.arange(n, dtype=np.int64), "item_positives": rng.integers(0, 9, n),
                       "item_positive_rate": rng.random(n).astype(np.float32)})
    path = tmp_path_factory.mktemp("src") / "item_stats.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=333)
    return view, path, df


def expected(df, start, end):
    w = df[(df["event_timestamp"] <= end) & ((df["event_timestamp"] > start) if start is not None else True)]
    w = w.assign(__row__=np.arange(len(df))[w.index])
    return w.sort_values(["item_id", "event_timestamp", "__row__"]).groupby("item_id").tail(1).sort_values("__row__")


@pytest.mark.parametrize("days", [(None, 40), (None, 3), (10, 20), (25, 26), (39, 45), (50, 60)])
def test_latest_rows_match_pandas(fw, source, days):
    view, path, df = source
    start = None if days[0] is None else fw.START + pd.Timedelta(days=days[0])
    end = fw.START + pd.Timedelta(days=days[1])
    table, in_window = latest_rows(path, view, start, end)
    want = expected(df, start, end)
    got = table.to_pandas()
    assert in_window == int(((df["event_timestamp"] <= end) & (
        (df["event_timestamp"] > start) if start is not None else True)).sum())
    np.testing.assert_array_equal(got["item_impressions"], want["item_impressions"])  # the row's own position
    assert got["item_id"].is_unique and len(got) == want["item_id"].nunique()


def test_sqlite_rows_equal_feasts_own_writer(fw, tmp_path):
    """The executemany writer leaves exactly the table Feast's SqliteOnlineStore.online_write_batch leaves."""
    import sqlite3

    from feast.utils import _convert_arrow_to_proto

    items, ev = fw.make_world()
    end = fw.START + pd.Timedelta(days=9)
    ours = fw.build_repo(tmp_path / "ours", items, ev)
    ours.materialize(end)
    feasts = fw.build_repo(tmp_path / "feast", items, ev, project=ours.cfg.project)  # same table names and keys
    provider = feasts.store._get_provider()
    for name, path in feasts.paths().items():
        view = feasts.store.get_feature_view(name)
        table, _ = latest_rows(path, view, None, end)
        rows = _convert_arrow_to_proto(table, view, {e.name: e.dtype.to_value_type() for e in view.entity_columns})
        provider.online_write_batch(config=feasts.store.config, table=view, data=rows, progress=None)
    for name in ours.paths():
        query = (f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts FROM "
                 f"{ours.cfg.project}_{name} ORDER BY entity_key, feature_name")
        a = sqlite3.connect(ours.data_dir / "online_store.db").execute(query).fetchall()
        b = sqlite3.connect(feasts.data_dir / "online_store.db").execute(query).fetchall()
        assert a == b and len(a) > 0, name
