"""Materialization of one feature view: its latest row per entity in a time window, written to the online store.

Why not `FeatureStore.materialize`: with the file offline store Feast reads the window through dask, which
tokenizes (pickles) every list column on the way: most of the time of materializing the interest profiles went there.
Here the window is read from the view's parquet source with pyarrow (the key and time columns whole, the features
only from the row groups that hold a selected row), reduced to the latest row per entity (what Feast's online store
keeps) and converted by Feast's own `_convert_arrow_to_proto`. Redis gets the rows through the online store's own
`online_write_batch`; sqlite gets the same table rows with one executemany instead of an execute per value
(tests/features/test_online_write.py compares the tables byte for byte). The interval is recorded in the registry
as Feast's materialize does, so `feast materialize-incremental` continues from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.utils import _convert_arrow_to_proto, to_naive_utc

from features.serving import sqlite_table


def latest_rows(path: Path, view: FeatureView, start: pd.Timestamp | None, end: pd.Timestamp
                ) -> tuple[pa.Table, int]:
    """The view's source rows with start < event_timestamp <= end (no lower bound when start is None), latest per
    entity (ties: the later row of the file), in file order; and the number of source rows in the window.

    Only the key and timestamp columns are read whole; the feature columns are read from the row groups that hold
    a selected row (features.repo writes sources in row groups of SOURCE_ROW_GROUP rows)."""
    key = view.join_keys[0]
    ts_field = view.batch_source.timestamp_field
    source = pq.ParquetFile(path)
    latest, in_window, _ = window_index(source, view, start, end)
    columns = [key, ts_field, *(f.name for f in view.features)]
    group_end = np.cumsum([source.metadata.row_group(g).num_rows for g in range(source.num_row_groups)])
    groups = np.unique(np.searchsorted(group_end, latest, side="right"))
    if len(groups) == 0:
        return source.schema_arrow.empty_table().select(columns), 0
    table = source.read_row_groups(groups.tolist(), columns=columns)
    group_start = group_end - np.array([source.metadata.row_group(g).num_rows for g in range(source.num_row_groups)])
    offset = np.cumsum(np.r_[0, (group_end - group_start)[groups][:-1]])  # where each read group starts in `table`
    slot = np.searchsorted(groups, np.searchsorted(group_end, latest, side="right"))
    positions = offset[slot] + latest - group_start[groups][slot]
    return table.take(pa.array(positions)).combine_chunks(), in_window


def window_index(source: pq.ParquetFile, view: FeatureView, start: pd.Timestamp | None, end: pd.Timestamp
                 ) -> tuple[np.ndarray, int, pd.Timestamp | None]:
    """From the key and timestamp columns only: the file rows latest_rows returns (sorted), the number of rows in
    the window and the window's first timestamp (None when it is empty)."""
    key, ts_field = view.join_keys[0], view.batch_source.timestamp_field
    index = source.read(columns=[key, ts_field])
    keys = index[key].to_numpy()
    times = _micros(index[ts_field])
    window = times <= _micros_of(end)
    if start is not None:
        window &= times > _micros_of(start)
    rows = np.flatnonzero(window)
    order = rows[np.lexsort((rows, times[rows], keys[rows]))]
    latest = np.sort(order[np.r_[keys[order][1:] != keys[order][:-1], True]]) if len(order) else order
    first = pd.Timestamp(int(times[rows].min()), unit="us", tz="UTC") if len(rows) else None
    return latest, len(rows), first


def _micros(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64()).to_numpy()


def _micros_of(ts: pd.Timestamp) -> int:
    return int(ts.tz_convert("UTC").value // 1000)  # .value is in nanoseconds whatever the unit


def write_window(store: FeatureStore, view_name: str, path: Path, start: pd.Timestamp | None, end: pd.Timestamp,
                 batch_rows: int = 10_000) -> tuple[int, int]:
    """Write the view's latest rows of the window (latest_rows) to the online store; returns (entities written,
    source rows in the window)."""
    view = store.get_feature_view(view_name)
    table, in_window = latest_rows(path, view, start, end)
    provider = store._get_provider()
    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    plain_sqlite = isinstance(provider.online_store, SqliteOnlineStore) and not (
        store.config.online_store.vector_enabled
        or getattr(store.config.online_store, "enable_openai_compatible_store", False))
    for batch in table.to_batches(max_chunksize=batch_rows):
        rows = _convert_arrow_to_proto(batch, view, join_keys)
        if plain_sqlite:
            _write_sqlite(store, provider.online_store, view, rows)
        else:
            provider.online_write_batch(config=store.config, table=view, data=rows, progress=None)
    first = start if start is not None else _min_time(table, view)
    if first is not None:
        store.registry.apply_materialization(view, store.project, first.to_pydatetime(), end.to_pydatetime())
    return table.num_rows, in_window


def spark_write_window(store: FeatureStore, view_name: str, path: Path, start: pd.Timestamp | None,
                       end: pd.Timestamp) -> tuple[int, int]:
    """write_window through Feast's Spark compute engine (`batch_engine: spark.engine` in the store's config):
    Feast reads the window, keeps the latest row per entity and writes it from the executors through the online
    store's own online_write_batch, in Arrow batches of the materialization batch size (the driver holds none of
    the rows when the offline store is Spark). The same online rows as write_window (tests/features/
    test_spark_materialize.py); Feast records the interval in the registry."""
    view = store.get_feature_view(view_name)
    latest, in_window, first = window_index(pq.ParquetFile(path), view, start, end)
    if first is not None:  # Feast's window is closed at both ends: from the first row (a row at `start` was written)
        store.materialize(start_date=(start or first).to_pydatetime(), end_date=end.to_pydatetime(),
                          feature_views=[view_name])
    return len(latest), in_window


def _write_sqlite(store: FeatureStore, online: SqliteOnlineStore, view: FeatureView, rows: list) -> None:
    """What SqliteOnlineStore.online_write_batch writes (the same table, key encoding, columns and upsert), with one
    executemany instead of one execute per feature value."""
    cfg = store.config
    table = sqlite_table(cfg, view)
    params = []
    for entity_key, values, ts, created in rows:
        key = serialize_entity_key(entity_key, entity_key_serialization_version=cfg.entity_key_serialization_version)
        ts, created = to_naive_utc(ts), to_naive_utc(created) if created is not None else None
        params += [(key, name, val.SerializeToString(), extract_text_and_num(val, False)[0], ts, created)
                   for name, val in values.items()]
    conn = online._get_conn(cfg)
    with conn:
        conn.executemany(f"INSERT INTO {table} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
                         "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
                         "created_ts = excluded.created_ts", params)


def _min_time(table: pa.Table, view: FeatureView) -> pd.Timestamp | None:
    if table.num_rows == 0:
        return None
    return pd.Timestamp(pc.min(table[view.batch_source.timestamp_field]).as_py()).tz_convert("UTC")
