"""Ranking-ready feature frames from a Feast FeatureStore, with defined defaults for unknown ids.

Defaults (the same in online serving and in offline retrieval, `finalize`), declared in the schema as the
`default` tag of a Field (features.definitions):
- counts (item_/user_ impressions and positives, hist_len): 0;
- semantic IDs of the candidate (sid_0..sid_{L-1}): -1;
- smoothed positive rates: no default, NaN ("no evidence"; LightGBM routes NaN as missing);
- match features: as defined in features.match_features: similarities NaN, counts and SID matches 0.
Flags: `unknown_user` is True when none of the service's user-keyed feature views has a row for the user (as of
the request / example time), `unknown_item` likewise for item-keyed views. Unknown ids never raise; malformed
requests do (DataError naming the value): an unknown FeatureService, an empty candidate list, an id that is not a
non-negative int64 (ids are int64 join keys: a float, a bool, "12a" or -3 would silently match nothing).
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Sequence
from typing import NamedTuple, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureStore, FeatureView, OnDemandFeatureView
from feast.errors import FeatureServiceNotFoundException, FeatureViewNotFoundException
from feast.feature_service import FeatureService
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import SqliteOnlineStore, _quote_id, _table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from pandas.api.extensions import ExtensionArray

from recsys.errors import DataError

USER_VIEWS = ("user_interests", "user_stats")
ITEM_VIEWS = ("item_embedding", "item_stats")
_NUMPY_DTYPES = {"Int64": np.int64, "Float32": np.float32, "Float64": np.float64}
_DIGITS = re.compile(r"\s*[+-]?\d+\s*")
_INT64_MAX = np.iinfo(np.int64).max


def feature_service(store: FeatureStore, service: str) -> FeatureService:
    """The registered FeatureService `service`, or a DataError listing the registered ones."""
    try:
        return store.get_feature_service(service)
    except FeatureServiceNotFoundException:
        known = sorted(s.name for s in store.list_feature_services())
        raise DataError(f"unknown FeatureService '{service}'; this repository serves {known}") from None


def entity_id(value, what: str) -> int:
    """`value` as an id (a non-negative int64): ints, integral numpy scalars and decimal strings are accepted."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        number = int(value)
    else:
        raise DataError(f"{what} {value!r} is not an integer id")
    if not 0 <= number <= _INT64_MAX:
        raise DataError(f"{what} {number} is outside the id range 0..{_INT64_MAX}")
    return number


def candidate_list(values: Sequence) -> list[int]:
    """The candidate list as ids (entity_id), refused when empty."""
    ids = [entity_id(v, "candidate item id") for v in values]
    if not ids:
        raise DataError("the candidate list is empty: pass at least one item id")
    return ids


class ServiceLayout(TypedDict):
    """A FeatureService's columns: by kind ("user" / "item" keyed views, "derived" = on-demand), in service order,
    with their numpy dtypes and the defaults of missing values."""

    user: list[str]
    item: list[str]
    derived: list[str]
    order: list[str]
    dtypes: dict[str, type]
    defaults: dict[str, float]


def service_layout(store: FeatureStore, service: str) -> ServiceLayout:
    """The layout of `service` as registered in `store`."""
    return layout_of(feature_service(store, service))


def layout_of(fs: FeatureService) -> ServiceLayout:
    """The layout of a FeatureService object."""
    layout = ServiceLayout(user=[], item=[], derived=[], order=[], dtypes={}, defaults={})
    for proj in fs.feature_view_projections:
        kind = "user" if proj.name in USER_VIEWS else "item" if proj.name in ITEM_VIEWS else "derived"
        for f in proj.features:
            layout[kind].append(f.name)
            layout["order"].append(f.name)
            dt = _NUMPY_DTYPES.get(str(f.dtype))
            if dt is not None:
                layout["dtypes"][f.name] = dt
            if "default" in f.tags:
                layout["defaults"][f.name] = float(f.tags["default"])
    return layout


def finalize(df: pd.DataFrame, layout: ServiceLayout) -> pd.DataFrame:
    """Add unknown_user/unknown_item flags, fill documented defaults, cast to the declared dtypes.

    Columns come out as: the frame's other columns (ids, timestamp, passthrough), the service's features in
    service order, then the two flags, so online and offline frames line up column for column.
    """
    out = finalize_columns({c: df[c].array for c in df.columns}, layout)
    out.index = df.index
    return out


def finalize_columns(columns: dict[str, np.ndarray | ExtensionArray | list], layout: ServiceLayout) -> pd.DataFrame:
    """finalize() of a frame given as its columns (online serving builds no frame before this one)."""
    n = len(next(iter(columns.values()))) if columns else 0
    flags = {}
    for kind in ("user", "item"):
        cols = [c for c in layout[kind] if c in columns]
        missing = [pd.isna(np.asarray(columns[c], dtype=object)) for c in cols]
        flags[f"unknown_{kind}"] = np.logical_and.reduce(missing) if cols else np.ones(n, dtype=bool)
    typed = {}
    for col, dtype in layout["dtypes"].items():
        if col not in columns:
            continue
        values = np.asarray(pd.to_numeric(np.asarray(columns[col]), errors="coerce"))
        if col in layout["defaults"] and values.dtype.kind == "f":
            values = np.where(np.isnan(values), layout["defaults"][col], values)
        if np.dtype(dtype).kind in "iu" and values.dtype.kind == "f" and np.isnan(values).any():
            raise DataError(f"feature '{col}' is missing for some rows and has no default to fill", column=col)
        typed[col] = values.astype(dtype)
    feats = [c for c in layout["order"] if c in columns]
    others = [c for c in columns if c not in feats and c not in flags]
    return pd.DataFrame({**{c: columns[c] for c in others}, **{c: typed.get(c, columns[c]) for c in feats},
                         **flags})


def rank_frame(store: FeatureStore, user_id: int, candidate_ids: Sequence[int], service: str) -> pd.DataFrame:
    """One row per candidate (input order): user_id, item_id, the service's features, unknown_user, unknown_item.

    Ids may be ints or decimal strings (a CLI's raw input); anything else is refused before the store is read.
    A one-off call; a serving process keeps one OnlineReader per service instead (FeatureRepo.reader)."""
    return OnlineReader(store, service).rank_frame(user_id, candidate_ids)


_LIST_DTYPES = {"float_list_val": np.float32, "double_list_val": np.float64, "int64_list_val": np.int64,
                "int32_list_val": np.int32, "bool_list_val": np.bool_}


def python_value(value: ValueProto):
    """A stored ValueProto as the value the on-demand views and `finalize` expect: None when missing, a numpy array
    for a list (of the stored dtype: float32 lists stay float32, as `match_features.stack` casts them), else the
    scalar."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    if kind in _LIST_DTYPES:
        return np.asarray(getattr(value, kind).val, dtype=_LIST_DTYPES[kind])
    if kind.endswith("_list_val"):
        return list(getattr(value, kind).val)
    return getattr(value, kind)


def json_rows(frame: pd.DataFrame) -> dict[str, list]:
    """A served frame as JSON-ready {"columns", "rows"}: python scalars, NaN as None."""
    def value(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        return v.item() if hasattr(v, "item") else v

    return {"columns": list(frame.columns),
            "rows": [[value(v) for v in row] for row in frame.itertuples(index=False, name=None)]}


def sqlite_table(config: RepoConfig, view: FeatureView) -> str:
    """The quoted name of a view's table in Feast's sqlite online store (as SqliteOnlineStore names it)."""
    return _quote_id(_table_id(config.project, view, config.registry.enable_online_feature_view_versioning))


class _ViewRead(NamedTuple):
    view: FeatureView
    key: str
    features: list[str]
    per_user: bool


class OnlineReader:
    """One FeatureService read from the online store, with its registry objects resolved once.

    Why not `FeatureStore.get_online_features`: per request it rebuilds the service's registry objects, repeats the
    user's profile (thousands of floats) onto every candidate row and converts every value protobuf -> python ->
    arrow -> pandas before the on-demand views run. This reads the same rows through the same online store
    (`provider.online_read`: sqlite or Redis), the user's views once and the item views for all candidates in one
    call, and runs the service's registered on-demand view functions on a frame whose user columns hold the one
    user's values by reference. The values are bit-identical to `get_online_features` + `finalize`
    (tests/features/test_serving.py). A reader does not see definitions re-applied after it was built: make a new
    one (FeatureRepo.apply does for its own readers).
    """

    def __init__(self, store: FeatureStore, service: str):
        self.service = service
        fs = feature_service(store, service)
        self.layout = layout_of(fs)
        self._config = store.config
        self._provider = store._get_provider()
        reads: dict[str, list[str]] = {}
        self._derived: list[tuple[OnDemandFeatureView, list[str], list[str]]] = []
        for proj in fs.feature_view_projections:
            names = [f.name for f in proj.features]
            odfv = _on_demand_view(store, proj.name)
            if odfv is None:
                reads.setdefault(proj.name, []).extend(names)
                continue
            inputs = []
            for src in odfv.source_feature_view_projections.values():
                feats = [f.name for f in src.features]
                reads.setdefault(src.name, []).extend(feats)
                inputs += feats
            self._derived.append((odfv, list(dict.fromkeys(inputs)), names))
        self._reads = []
        for name, feats in reads.items():
            view = store.get_feature_view(name)
            key = view.join_keys[0]
            self._reads.append(_ViewRead(view, key, list(dict.fromkeys(feats)), key == "user_id"))
        self._columns = ["user_id", "item_id"] + self.layout["order"]
        self._key_bytes = functools.lru_cache(maxsize=1 << 17)(self._entity_key)  # ids repeat across requests
        self._sqlite_tables = None
        if isinstance(self._provider.online_store, SqliteOnlineStore):
            self._sqlite_tables = {r.view.name: sqlite_table(self._config, r.view) for r in self._reads}

    def _entity_key(self, key: str, value: int) -> bytes:
        return serialize_entity_key(EntityKeyProto(join_keys=[key], entity_values=[ValueProto(int64_val=value)]),
                                    entity_key_serialization_version=self._config.entity_key_serialization_version)

    def _stored(self, read: _ViewRead, ids: list[int]) -> list[dict[str, ValueProto] | None]:
        """The stored values of `ids` in one view (None: no row). On sqlite one SELECT of Feast's own table, by
        Feast's own key encoding, of the values only (Feast's online_read also converts every row's timestamp);
        any other online store through `provider.online_read`."""
        if self._sqlite_tables is None:
            keys = [EntityKeyProto(join_keys=[read.key], entity_values=[ValueProto(int64_val=i)]) for i in ids]
            rows = self._provider.online_read(config=self._config, table=read.view, entity_keys=keys,
                                              requested_features=read.features)
            return [values for _, values in rows]
        keys = [self._key_bytes(read.key, i) for i in ids]
        conn = self._provider.online_store._get_conn(self._config)
        found: dict[bytes, dict[str, ValueProto]] = {}
        for key, name, blob in conn.execute(
                f"SELECT entity_key, feature_name, value FROM {self._sqlite_tables[read.view.name]} "
                f"WHERE entity_key IN ({','.join('?' * len(keys))})", keys):
            value = ValueProto()
            value.ParseFromString(blob)
            found.setdefault(key, {})[name] = value
        return [found.get(k) for k in keys]

    def _read(self, read: _ViewRead, ids: list[int]) -> dict[str, list]:
        cols: dict[str, list] = {f: [None] * len(ids) for f in read.features}
        for r, values in enumerate(self._stored(read, ids)):
            if values:
                for f in read.features:
                    if f in values:
                        cols[f][r] = python_value(values[f])
        return cols

    def rank_frame(self, user_id, candidate_ids: Sequence) -> pd.DataFrame:
        """One row per candidate (input order): user_id, item_id, the service's features, unknown_user,
        unknown_item (see features.serving.rank_frame)."""
        user = entity_id(user_id, "user id")
        cands = candidate_list(candidate_ids)
        n = len(cands)
        data: dict[str, object] = {"user_id": np.full(n, user, dtype=np.int64),
                                   "item_id": np.asarray(cands, dtype=np.int64)}
        for read in self._reads:
            if read.per_user:  # one row, shared by reference by every candidate row
                data.update({f: [v[0]] * n for f, v in self._read(read, [user]).items()})
            else:
                data.update(self._read(read, cands))
        for odfv, inputs, names in self._derived:
            frame = pd.DataFrame({c: data[c] for c in inputs})
            if odfv.mode == "pandas":
                out = odfv.feature_transformation.transform(frame)
            else:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                out = odfv.transform_arrow(table, full_feature_names=False).to_pandas()
            data.update({name: out[name].to_numpy() for name in names})
        return finalize_columns({c: data[c] for c in self._columns}, self.layout)


def _on_demand_view(store: FeatureStore, name: str) -> OnDemandFeatureView | None:
    try:
        return store.get_on_demand_feature_view(name)
    except FeatureViewNotFoundException:  # Feast 0.67 raises this for a missing on-demand view too
        return None
