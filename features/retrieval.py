"""Point-in-time (historical) retrieval of a FeatureService for training examples, exact and fast enough.

`historical_features` answers what Feast's `get_historical_features` answers for the whole service, row for row,
while working around two properties of Feast 0.67's file (dask) offline store:
- it loses entity rows when one call joins several views: rows sharing (the join keys seen so far, timestamp) are
  collapsed (feast-dev/feast#6787: e.g. one user's candidates at one time), and a row whose entity has rows only
  after t (or older than ttl) is dropped. So it calls Feast once PER FEATURE VIEW on distinct (join key, timestamp)
  pairs, which is immune, and merges the answers back here;
- its cost grows with the number of distinct (key, timestamp) entity rows, and pickles list columns to tokenize
  them. So example times are reduced where that is provably exact (`query_times`), or the join is done by
  pandas `merge_asof` over the same parquet source (engine="asof", same semantics).
The service's on-demand views then run through the registry's own objects (`transform_arrow`, what Feast runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureStore

from features.schema import ROW_TIME
from features.serving import feature_service, finalize, service_layout
from recsys.errors import DataError


def historical_features(store: FeatureStore, paths: Mapping[str, Path], entity_df: pd.DataFrame, service: str,
                        chunk_rows: int = 20_000, engine: Literal["feast", "asof"] = "feast",
                        reduce_times: bool | None = None) -> pd.DataFrame:
    """Point-in-time features of `service` for entity_df[user_id, item_id, event_timestamp] (+ passthrough columns).

    paths: the parquet source of each feature view (FeatureRepo.paths()). Rows come back in the input order (and
    index) with the documented defaults and unknown_user/unknown_item flags. Each example at t sees only feature
    rows with event_timestamp <= t (snapshots built from events < t).

    reduce_times (engine="feast"; None: only on Feast's file store, whose dask join costs grow with the entity
    rows, while DuckDB and Spark answer all rows faster than the reduction costs): every source but item_embedding
    is written on a daily 00:00 UTC grid, so most
    example times can be moved back to their day's 00:00 without changing the as-of row; `query_times` does that
    per row where it is provably exact, and Feast still performs the point-in-time join on the reduced entity
    rows. reduce_times=False queries every distinct (key, example time) (tested equal).
    engine="asof" replaces the per-view Feast call by a pandas `merge_asof` over the same parquet source (latest
    row with event_timestamp <= t and >= t - ttl; tested equal): the faster choice for large training sets.
    """
    for c in ("user_id", "item_id", "event_timestamp"):
        if c not in entity_df.columns:
            raise DataError(f"entity_df needs column '{c}'", column=c)
    fs_service = feature_service(store, service)
    if reduce_times is None:
        reduce_times = store.config.offline_store.type == "file"
    out = entity_df.reset_index(drop=True).copy()
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).dt.as_unit("us")

    odfvs, wanted, keep = [], {}, []
    for proj in fs_service.feature_view_projections:
        names = [f.name for f in proj.features]
        keep += names
        try:
            odfv = store.get_on_demand_feature_view(proj.name)
        except Exception:  # noqa: BLE001 - a regular feature view
            wanted.setdefault(proj.name, []).extend(names)
            continue
        odfvs.append((odfv, names))
        for src in odfv.source_feature_view_projections.values():
            wanted.setdefault(src.name, []).extend(f.name for f in src.features)

    for view, feats in wanted.items():
        feats = list(dict.fromkeys(feats))
        key = store.get_feature_view(view).join_keys[0]
        keys = out[[key, "event_timestamp"]].drop_duplicates().reset_index(drop=True)
        if engine == "asof":
            got = _asof(store, paths[view], view, key, feats, keys)
        elif reduce_times:
            keys["__query_ts__"] = query_times(store, paths[view], view, key, keys)
            query = (keys[[key, "__query_ts__"]].drop_duplicates()
                     .rename(columns={"__query_ts__": "event_timestamp"}).reset_index(drop=True))
            got = _feast_view(store, paths[view], view, key, feats, query)
            got = keys.merge(got.rename(columns={"event_timestamp": "__query_ts__"}), on=[key, "__query_ts__"],
                             how="left", validate="many_to_one").drop(columns="__query_ts__")
        else:
            got = _feast_view(store, paths[view], view, key, feats, keys)
        out = out.merge(got, on=[key, "event_timestamp"], how="left", validate="many_to_one")

    for odfv, names in odfvs:
        inputs = [f.name for src in odfv.source_feature_view_projections.values() for f in src.features]
        parts = []
        for lo in range(0, len(out), chunk_rows):
            chunk = out.iloc[lo:lo + chunk_rows][inputs].reset_index(drop=True)
            if odfv.mode == "pandas":  # the registered function itself, without the arrow round trip of lists
                parts.append(odfv.feature_transformation.transform(chunk)[names])
            else:
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                parts.append(odfv.transform_arrow(table, full_feature_names=False).to_pandas()[names])
        res = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=names)
        out[names] = res[names].to_numpy(np.float64) if len(res) else np.empty((0, len(names)))

    passthrough = [c for c in entity_df.columns if c not in keep]
    out = out[passthrough + [c for c in dict.fromkeys(keep) if c not in passthrough]]
    out = finalize(out, service_layout(store, service))
    out.index = entity_df.index
    return out


def _feast_view(store: FeatureStore, path: Path, view: str, key: str, feats: list[str], keys: pd.DataFrame
                ) -> pd.DataFrame:
    """One view's `get_historical_features` on distinct (key, event_timestamp) rows; one row per pair.

    For a view that declares ROW_TIME, Feast is asked for the scalar features and ROW_TIME only, and the list
    features of the row it picked are read from the source by (key, ROW_TIME): the same rows, without moving the
    lists through the offline store's join (most of its time)."""
    fv = store.get_feature_view(view)
    lists = [f.name for f in fv.features if f.name in feats and str(f.dtype).startswith("Array")]
    by_reference = ROW_TIME in {f.name for f in fv.features} and bool(lists)
    ask = [f for f in feats if f not in lists] + [ROW_TIME] if by_reference else feats
    got = store.get_historical_features(entity_df=keys, features=[f"{view}:{f}" for f in dict.fromkeys(ask)]).to_df()
    # spark returns tz-naive UTC timestamps, the file store tz-aware ones
    got["event_timestamp"] = pd.to_datetime(got["event_timestamp"], utc=True).dt.as_unit("us")
    got = got[[key, "event_timestamp", *dict.fromkeys(ask)]].drop_duplicates([key, "event_timestamp"])
    if by_reference:
        rows = pd.read_parquet(path, columns=[key, ROW_TIME, *lists]).drop_duplicates([key, ROW_TIME], keep="last")
        rows[ROW_TIME] = rows[ROW_TIME].astype("Int64")
        got[ROW_TIME] = pd.to_numeric(got[ROW_TIME]).astype("Int64")
        got = got.merge(rows, on=[key, ROW_TIME], how="left", validate="many_to_one")
        got = got[[key, "event_timestamp", *feats]]
    return got


def query_times(store: FeatureStore, path: Path, view: str, key: str, keys: pd.DataFrame) -> pd.Series:
    """An equivalent query time for each (key, t) of `keys`: one whose as-of row in `view` is provably the same.

    With L(t) = the latest source timestamp of the key at or before t (NaT if none), Feast's answer at t is
    the row at L(t) if L(t) >= t - ttl, else nothing. Query time q, per row:
      - floor_day(t) when L(floor_day(t)) == L(t) (no source row of the key in (floor_day(t), t]) and the ttl
        cannot tell them apart (L(t) is NaT or >= t - ttl): always the case for daily-snapshot sources;
      - else L(t) itself when L(t) >= t - ttl (e.g. an item's embedding on its creation day: the row at L(t)
        is the latest at or before L(t) and within the ttl at both times);
      - else t (exact).
    The decision reads only the source's (`path`) key and timestamp columns, at run time, so it holds for any data.
    """
    src = pd.read_parquet(path, columns=[key, "event_timestamp"])
    src[key] = src[key].astype(np.int64)
    src["__src_ts__"] = pd.to_datetime(src["event_timestamp"], utc=True).dt.as_unit("us")
    src = src[[key, "__src_ts__"]].drop_duplicates().sort_values("__src_ts__", kind="stable")
    t = pd.to_datetime(keys["event_timestamp"], utc=True).dt.as_unit("us").reset_index(drop=True)
    q = pd.DataFrame({key: keys[key].to_numpy(np.int64), "__t__": t, "__floor__": t.dt.floor("D"),
                      "__row__": np.arange(len(keys))})

    def latest(col: str) -> pd.Series:
        left = q[[key, col, "__row__"]].sort_values(col, kind="stable")
        m = pd.merge_asof(left, src, left_on=col, right_on="__src_ts__", by=key, direction="backward",
                          allow_exact_matches=True)
        return m.set_index("__row__")["__src_ts__"].reindex(q["__row__"]).reset_index(drop=True)

    l_t, l_floor = latest("__t__"), latest("__floor__")
    t_s, floor_s = q["__t__"], q["__floor__"]
    ttl = store.get_feature_view(view).ttl
    if ttl and ttl.total_seconds() != 0:
        in_ttl = l_t.notna() & (l_t >= t_s - pd.Timedelta(ttl))
    else:
        in_ttl = l_t.notna()
    same = (l_t.isna() & l_floor.isna()) | (l_t == l_floor)
    use_floor = same & (l_t.isna() | in_ttl)
    use_latest = ~use_floor & in_ttl
    out = t_s.where(~use_floor, floor_s).where(~use_latest, l_t)
    return pd.Series(out.to_numpy(), index=keys.index, name="__query_ts__").astype(t.dtype)


def _asof(store: FeatureStore, path: Path, view: str, key: str, feats: list[str], keys: pd.DataFrame
          ) -> pd.DataFrame:
    """Feast's point-in-time rule for one view, with pandas: latest row <= t within the view's ttl."""
    src = pd.read_parquet(path, columns=[key, "event_timestamp", *feats])
    src["event_timestamp"] = pd.to_datetime(src["event_timestamp"], utc=True).dt.as_unit("us")
    src = src.rename(columns={"event_timestamp": "__feature_ts__"}).sort_values("__feature_ts__", kind="stable")
    left = keys.sort_values("event_timestamp", kind="stable")
    ttl = store.get_feature_view(view).ttl
    return pd.merge_asof(left, src, left_on="event_timestamp", right_on="__feature_ts__", by=key,
                         direction="backward", allow_exact_matches=True,
                         tolerance=pd.Timedelta(ttl) if ttl else None).drop(columns="__feature_ts__")
