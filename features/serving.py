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

import numbers
import re
from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.errors import FeatureServiceNotFoundException
from feast.feature_service import FeatureService

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
    fs = feature_service(store, service)
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
    df = df.copy()
    for kind in ("user", "item"):
        cols = [c for c in layout[kind] if c in df.columns]
        df[f"unknown_{kind}"] = df[cols].isna().all(axis=1) if cols else True
    for col, dtype in layout["dtypes"].items():
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        if col in layout["defaults"]:
            values = values.fillna(layout["defaults"][col])
        df[col] = values.astype(dtype)
    feats = [c for c in layout["order"] if c in df.columns]
    flags = ["unknown_user", "unknown_item"]
    return df[[c for c in df.columns if c not in feats and c not in flags] + feats + flags]


def rank_frame(store: FeatureStore, user_id: int, candidate_ids: Sequence[int], service: str) -> pd.DataFrame:
    """One row per candidate (input order): user_id, item_id, the service's features, unknown_user, unknown_item.

    Ids may be ints or decimal strings (a CLI's raw input); anything else is refused before the store is read."""
    user = entity_id(user_id, "user id")
    cands = candidate_list(candidate_ids)
    fs = feature_service(store, service)
    rows = [{"user_id": user, "item_id": c} for c in cands]
    out = store.get_online_features(features=fs, entity_rows=rows).to_df()
    out["user_id"] = np.int64(user)
    out["item_id"] = np.asarray(cands, dtype=np.int64)
    out = finalize(out, service_layout(store, service))
    front = ["user_id", "item_id"]
    return out[front + [c for c in out.columns if c not in front]]
