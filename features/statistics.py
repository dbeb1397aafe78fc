"""Point-in-time engagement statistics of items and users, as daily snapshots.

A snapshot at time s counts every interaction with timestamp STRICTLY BEFORE s and carries event_timestamp = s
(same semantics as features.interests), so an as-of join for an example at t only sees events before t.
A row is emitted for an entity only at the snapshots where its counts changed, so the rate a point-in-time join
returns is the one of the entity's last change (`entity_stats_asof` computes exactly that row for one time).

Columns (prefix = "item" or "user"): <prefix>_impressions, <prefix>_positives (int64) and
<prefix>_positive_rate = (positives + m * prior) / (impressions + m) (float32), where prior is the global positive
rate of all events before s (Laplace-smoothed: (P + 1) / (I + 2)) and m = `prior_strength`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

_DAY_US = 86_400 * 1_000_000

class StatsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prior_strength: float = Field(10.0, ge=0, description="pseudo-impressions at the global rate (smoothing)")


def utc_snapshots(snapshot_times) -> pd.DatetimeIndex:
    """Snapshot times as sorted tz-aware UTC microsecond timestamps (naive ones are taken as UTC)."""
    snaps = pd.DatetimeIndex(snapshot_times)
    if snaps.tz is None:
        snaps = snaps.tz_localize("UTC")
    return snaps.tz_convert("UTC").as_unit("us").sort_values()


def entity_stats(interactions: pd.DataFrame, positive: pd.Series, snapshot_times, key: str, prefix: str,
                 cfg: StatsConfig | None = None) -> pd.DataFrame:
    """Snapshots of impressions/positives/smoothed rate per `key` (see module doc)."""
    cfg = cfg or StatsConfig()
    snaps = utc_snapshots(snapshot_times)
    t = pd.to_datetime(interactions["timestamp"], utc=True, cache=False).dt.as_unit("us").astype("int64").to_numpy()
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


def entity_stats_asof(interactions: pd.DataFrame, positive, at, key: str, prefix: str,
                      cfg: StatsConfig | None = None) -> pd.DataFrame:
    """Per entity, the row a point-in-time join at time `at` returns from `entity_stats` on the daily grid
    (features.interests.daily_snapshots): what a simulated day needs (features.inmemory), without every day's rows.

    That row is the entity's latest snapshot at or before floor_day(at): its counts are every event before that
    day, and its rate is the one of the snapshot where its counts last changed (the day after its last event),
    smoothed with THAT snapshot's prior. event_timestamp is that snapshot. Assumes the grid starts no later than
    the day of the first interaction, as the pipeline's does.
    """
    cfg = cfg or StatsConfig()
    day = utc_snapshots([at]).floor("D").asi8[0]
    t = pd.to_datetime(interactions["timestamp"], utc=True, cache=False).dt.as_unit("us").astype("int64").to_numpy()
    keep = t < day
    t, keys = t[keep], interactions[key].to_numpy(np.int64)[keep]
    pos = np.asarray(positive, dtype=bool)[keep]
    cols = [key, "event_timestamp", f"{prefix}_impressions", f"{prefix}_positives", f"{prefix}_positive_rate"]
    if not len(keys):
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in zip(
            cols, ["int64", "datetime64[us, UTC]", "int64", "int64", "float32"])})
    uniq, inv = np.unique(keys, return_inverse=True)
    imp = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
    npos = np.bincount(inv[pos], minlength=len(uniq)).astype(np.int64)
    last = np.full(len(uniq), np.iinfo(np.int64).min)
    np.maximum.at(last, inv, t)
    changed = (last // _DAY_US + 1) * _DAY_US  # the first daily snapshot strictly after the last event
    order = np.argsort(t, kind="stable")
    before = np.searchsorted(t[order], changed, side="left")  # events strictly before that snapshot
    pos_before = np.concatenate([[0], np.cumsum(pos[order], dtype=np.int64)])[before]
    prior = (pos_before + 1.0) / (before + 2.0)
    m = cfg.prior_strength
    return pd.DataFrame({
        key: uniq,
        "event_timestamp": pd.to_datetime(changed, unit="us", utc=True).as_unit("us"),
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
