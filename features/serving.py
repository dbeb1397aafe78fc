"""Ranking-ready feature frames from the Feast online store, with defined defaults for unknown ids.

Defaults (the same in online serving and in offline retrieval, `finalize`):
- counts (item_/user_ impressions and positives, hist_len): 0;
- smoothed positive rates: NaN ("no evidence"; LightGBM routes NaN as missing);
- semantic IDs of the candidate (sid_0..): -1;
- match features: as defined in features.match_features: similarities NaN, counts and SID matches 0.
Flags: `unknown_user` is True when none of the service's user-keyed feature views has a row for the user (as of
the request / example time), `unknown_item` likewise for item-keyed views. Unknown ids never raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
from feast import FeatureStore

if TYPE_CHECKING:
    from features.repo import FeatureRepo

USER_VIEWS = ("user_interests", "user_stats")
ITEM_VIEWS = ("item_embedding", "item_stats")
DEFAULTS: dict[str, float] = {
    "item_impressions": 0, "item_positives": 0, "user_impressions": 0, "user_positives": 0, "hist_len": 0,
    "sid_0": -1, "sid_1": -1, "sid_2": -1,
}
_NUMPY_DTYPES = {"Int64": np.int64, "Float32": np.float32, "Float64": np.float64}


def service_layout(store: FeatureStore, service: str) -> dict:
    """{"user"|"item"|"derived": [features], "order": [all, service order], "dtypes": {feature: numpy dtype}}."""
    fs = store.get_feature_service(service)
    layout: dict = {"user": [], "item": [], "derived": [], "order": [], "dtypes": {}}
    for proj in fs.feature_view_projections:
        kind = "user" if proj.name in USER_VIEWS else "item" if proj.name in ITEM_VIEWS else "derived"
        for f in proj.features:
            layout[kind].append(f.name)
            layout["order"].append(f.name)
            dt = _NUMPY_DTYPES.get(str(f.dtype))
            if dt is not None:
                layout["dtypes"][f.name] = dt
    return layout


def finalize(df: pd.DataFrame, layout: dict) -> pd.DataFrame:
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
        if col in DEFAULTS:
            df[col] = df[col].fillna(DEFAULTS[col])
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(dtype)
    feats = [c for c in layout["order"] if c in df.columns]
    flags = ["unknown_user", "unknown_item"]
    return df[[c for c in df.columns if c not in feats and c not in flags] + feats + flags]


def rank_frame(store: "FeatureStore | FeatureRepo", user_id: int, candidate_ids: Sequence[int],
               service: str = "ranking_match_sid_v1") -> pd.DataFrame:
    """One row per candidate (input order): user_id, item_id, the service's features, unknown_user, unknown_item."""
    fs: FeatureStore = store.store if hasattr(store, "store") else store
    cands = [int(c) for c in candidate_ids]
    rows = [{"user_id": int(user_id), "item_id": c} for c in cands]
    out = fs.get_online_features(features=fs.get_feature_service(service), entity_rows=rows).to_df()
    out["user_id"] = np.int64(user_id)
    out["item_id"] = np.asarray(cands, dtype=np.int64)
    out = finalize(out, service_layout(fs, service))
    front = ["user_id", "item_id"]
    return out[front + [c for c in out.columns if c not in front]]
