"""Point-in-time engagement statistics of items and users, as daily snapshots.

A snapshot at time s counts every interaction with timestamp STRICTLY BEFORE s and carries event_timestamp = s
(same semantics as recsys.interests), so an as-of join for an example at t only sees events before t.
A row is emitted for an entity only at the snapshots where its counts changed.

Columns (prefix = "item" or "user"): <prefix>_impressions, <prefix>_positives (int64) and
<prefix>_positive_rate = (positives + m * prior) / (impressions + m) (float32), where prior is the global positive
rate of all events before s (Laplace-smoothed: (P + 1) / (I + 2)) and m = `prior_strength`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field


class StatsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prior_strength: float = Field(10.0, ge=0, description="pseudo-impressions at the global rate (smoothing)")


def _snapshots(snapshot_times) -> pd.DatetimeIndex:
    snaps = pd.DatetimeIndex(snapshot_times)
    if snaps.tz is None:
        snaps = snaps.tz_localize("UTC")
    return snaps.tz_convert("UTC").as_unit("us").sort_values()


def entity_stats(interactions: pd.DataFrame, positive: pd.Series, snapshot_times, key: str, prefix: str,
                 cfg: StatsConfig | None = None) -> pd.DataFrame:
    """Snapshots of impressions/positives/smoothed rate per `key` (see module doc)."""
    cfg = cfg or StatsConfig()
    snaps = _snapshots(snapshot_times)
    t = pd.to_datetime(interactions["timestamp"], utc=True).dt.as_unit("us").astype("int64").to_numpy()
    # index of the first snapshot strictly after each event: the event counts from that snapshot on
    bucket = np.searchsorted(snaps.asi8, t, side="right")
    keep = bucket < len(snaps)
    df = pd.DataFrame({key: interactions[key].to_numpy(np.int64)[keep], "bucket": bucket[keep],
                       "pos": np.asarray(positive, dtype=bool)[keep].astype(np.int64)})
    cols = [key, "event_timestamp", f"{prefix}_impressions", f"{prefix}_positives", f"{prefix}_positive_rate"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in zip(
            cols, ["int64", "datetime64[us, UTC]", "int64", "int64", "float32"])})
    g = df.groupby([key, "bucket"], sort=True).agg(imp=("pos", "size"), pos=("pos", "sum")).reset_index()
    g["imp_cum"] = g.groupby(key)["imp"].cumsum()
    g["pos_cum"] = g.groupby(key)["pos"].cumsum()
    glob = df.groupby("bucket").agg(imp=("pos", "size"), pos=("pos", "sum")).reindex(
        np.arange(len(snaps)), fill_value=0).cumsum()
    prior = ((glob["pos"] + 1.0) / (glob["imp"] + 2.0)).to_numpy()[g["bucket"].to_numpy()]
    m = cfg.prior_strength
    out = pd.DataFrame({
        key: g[key].to_numpy(np.int64),
        "event_timestamp": snaps[g["bucket"].to_numpy()],
        f"{prefix}_impressions": g["imp_cum"].to_numpy(np.int64),
        f"{prefix}_positives": g["pos_cum"].to_numpy(np.int64),
        f"{prefix}_positive_rate": ((g["pos_cum"] + m * prior) / (g["imp_cum"] + m)).to_numpy(np.float32),
    })
    return out.sort_values(["event_timestamp", key], kind="stable").reset_index(drop=True)


def entity_stats_at(interactions: pd.DataFrame, positive, snapshot, key: str, prefix: str,
                    cfg: StatsConfig | None = None) -> pd.DataFrame:
    """entity_stats(interactions, positive, [snapshot], key, prefix, cfg) for ONE snapshot: the same rows, values
    and dtypes (every event strictly before the snapshot counts), with counting by bincount instead of a
    groupby over (key, snapshot) - what a simulated day needs (features.inmemory)."""
    cfg = cfg or StatsConfig()
    snaps = _snapshots([snapshot])
    t = pd.to_datetime(interactions["timestamp"], utc=True).dt.as_unit("us").astype("int64").to_numpy()
    keep = t < snaps.asi8[0]  # entity_stats: searchsorted(snaps, t, side="right") < len(snaps)
    keys = interactions[key].to_numpy(np.int64)[keep]
    pos = np.asarray(positive, dtype=bool)[keep]
    cols = [key, "event_timestamp", f"{prefix}_impressions", f"{prefix}_positives", f"{prefix}_positive_rate"]
    if not len(keys):
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in zip(
            cols, ["int64", "datetime64[us, UTC]", "int64", "int64", "float32"])})
    uniq, inv = np.unique(keys, return_inverse=True)
    imp = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
    npos = np.bincount(inv[pos], minlength=len(uniq)).astype(np.int64)
    prior = (np.int64(pos.sum()) + 1.0) / (np.int64(len(keys)) + 2.0)
    m = cfg.prior_strength
    return pd.DataFrame({
        key: uniq,
        "event_timestamp": snaps[np.zeros(len(uniq), np.int64)],
        f"{prefix}_impressions": imp,
        f"{prefix}_positives": npos,
        f"{prefix}_positive_rate": ((npos + m * prior) / (imp + m)).astype(np.float32),
    })


def item_stats(interactions: pd.DataFrame, positive: pd.Series, snapshot_times,
               cfg: StatsConfig | None = None) -> pd.DataFrame:
    """item_id, event_timestamp, item_impressions, item_positives, item_positive_rate."""
    return entity_stats(interactions, positive, snapshot_times, "item_id", "item", cfg)


def user_stats(interactions: pd.DataFrame, positive: pd.Series, snapshot_times,
               cfg: StatsConfig | None = None) -> pd.DataFrame:
    """user_id, event_timestamp, user_impressions, user_positives, user_positive_rate."""
    return entity_stats(interactions, positive, snapshot_times, "user_id", "user", cfg)
