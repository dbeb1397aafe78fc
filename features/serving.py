"""Ranking-ready feature frames from a Feast FeatureStore, with defined defaults for unknown ids.

Defaults (the same in online serving and in offline retrieval, `finalize`), declared in the schema as the
`default` tag of a Field (features.definitions):
- counts (item_/user_ impressions and positives, hist_len): 0;
- semantic IDs of the candidate (sid_0..sid_{L-1}): -1;
- smoothed positive rates: no default, NaN ("no evidence"; LightGBM routes NaN as missing);
- match features: as defined in features.match_features: similarities NaN, counts and SID matches 0.
Flags: `unknown_user` is True when none of the service's user-keyed feature views has a row for the user (as of
the request / example time), `unknown_item` likewise for item-keyed views. Unknown ids never raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import pandas as pd
from feast import FeatureStore

USER_VIEWS = ("user_interests", "user_stats")
ITEM_VIEWS = ("item_embedding", "item_stats")
_NUMPY_DTYPES = {"Int64": np.int64, "Float32": np.float32, "Float64": np.float64}


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
    fs = store.get_feature_service(service)
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
    """One row per candidate (input order): user_id, item_id, the service's features, unknown_user, unknown_item."""
    cands = [int(c) for c in candidate_ids]
    rows = [{"user_id": int(user_id), "item_id": c} for c in cands]
    out = store.get_online_features(features=store.get_feature_service(service), entity_rows=rows).to_df()
    out["user_id"] = np.int64(user_id)
    out["item_id"] = np.asarray(cands, dtype=np.int64)
    out = finalize(out, service_layout(store, service))
    front = ["user_id", "item_id"]
    return out[front + [c for c in out.columns if c not in front]]
