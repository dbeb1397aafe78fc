"""User interest mining: point-in-time snapshots of each user's positive-history profile.

For each user and each snapshot time s (normally 00:00 UTC of every day in a range) the profile is built from
the user's positively engaged items with timestamp STRICTLY BEFORE s and written with event_timestamp = s, so a
point-in-time join for an example at time t (feature timestamp <= t) never sees an event at or after t.

Profile (all vectors list<float32>, L2-normalised; padding is zeros / -1):
- hist_len: number of positive items before s. An event counts only when its item's embedding is available at the
  event (item table event_timestamp <= event time, the same availability the point-in-time join of candidates
  uses): events of items without an embedding, or before the item's availability, are skipped, counted
  (`interest_skips`) and logged as a WARNING. The embedding stage stamps availability = min(created_at, first
  interaction), so its tables skip none.
- mean_emb: mean of all history embeddings; recency_emb: mean weighted by 2^(-(s - t_i)/half_life) over the last
  `window` items (older items weigh < 2^-(window/rate)); last_emb: the last item's embedding.
- centroids [K_max * D], centroid_weights [K_max], centroid_items [K_max], centroid_sids [K_max * L]: PinnerSage
  style interests. The last `window` items are clustered with Ward agglomerative clustering (scipy `linkage`) on
  their (normalised) Matryoshka prefix; the dendrogram is split top-down while a split separates cluster means more
  than `cluster_distance` apart (Euclidean, unit vectors), capped at `k_max` clusters (cut by scipy `fcluster`).
  Each cluster is
  represented by its MEDOID (the member closest to all others: a real item, so it also has semantic IDs) and
  weighted by its recency-weighted share of the window. Sorted by weight, heaviest ("top") first.
- recent_items [N], recent_prefix [N * prefix_dim], recent_sids [N * L]: the last N positive items (most recent
  first), their normalised prefixes and semantic IDs, for the history-similarity and SID match features.
L (semantic-ID levels) is the caller's FeatureConfig.sid_levels; the item table must carry exactly sid_0..sid_{L-1}.

A row is emitted only when the user's history changed since the previous snapshot (the normalised recency mean
and the cluster shares do not change when every weight decays by the same factor), so Feast's as-of join picking
the latest row is exact.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from tqdm.auto import tqdm

from features.schema import check_sid_columns
from recsys.errors import DataError

log = logging.getLogger(__name__)


class InterestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    half_life_days: float = Field(14.0, gt=0, description="recency weight 2^(-age/half_life)")
    k_max: int = Field(4, ge=1, description="at most this many interest centroids per user")
    cluster_distance: float = Field(0.8, gt=0, description="split clusters whose mean vectors are farther apart")
    window: int = Field(100, ge=1, description="most recent positives used for recency mean and clustering")
    recent_n: int = Field(20, ge=1, description="recent history items kept for match features")
    prefix_dim: int = Field(64, ge=1, description="Matryoshka prefix length for clustering and recent_prefix "
                                                   "(must equal FeatureConfig.prefix_dim)")


def daily_snapshots(start, end) -> pd.DatetimeIndex:
    """00:00 UTC of every day from start's day to end's day (inclusive), tz-aware microsecond timestamps."""
    s = pd.Timestamp(start)
    e = pd.Timestamp(end)
    s = s.tz_localize("UTC") if s.tzinfo is None else s.tz_convert("UTC")
    e = e.tz_localize("UTC") if e.tzinfo is None else e.tz_convert("UTC")
    return pd.date_range(s.floor("D"), e.floor("D"), freq="D").as_unit("us")


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def choose_k(z: np.ndarray, n: int, cfg: InterestConfig) -> int:
    """Split top-down while the split separates clusters whose mean vectors are > cluster_distance apart.

    A Ward merge of clusters of sizes a, b at height h joins means that are h / sqrt(2ab/(a+b)) apart; using the
    mean distance (not the raw height) makes the rule independent of how long the history is.
    """
    size = np.concatenate([np.ones(n), z[:, 3]])
    k = 1
    for j in range(1, min(cfg.k_max, n)):
        i = n - 1 - j  # j-th merge from the top
        a, b = size[int(z[i, 0])], size[int(z[i, 1])]
        if z[i, 2] / np.sqrt(2 * a * b / (a + b)) <= cfg.cluster_distance:
            break
        k += 1
    return k


def cluster_interests(prefix: np.ndarray, weights: np.ndarray, cfg: InterestConfig) -> list[tuple[int, float]]:
    """Ward clustering of unit vectors -> [(medoid row, weight share)] sorted by weight (heaviest first)."""
    n = len(prefix)
    if n == 1:
        return [(0, 1.0)]
    # condensed distances by pdist, not a BLAS Gram matrix: multi-threaded BLAS on ~100 x 64 matrices costs far
    # more CPU than it saves on a busy 2-core machine
    z = linkage(pdist(np.asarray(prefix, np.float64)), method="ward")
    k = choose_k(z, n, cfg)
    # undo the top k-1 merges: Ward heights are monotone, so the maxclust cut is exactly that (unless heights tie
    # at the cut, where it keeps the tied merges and gives fewer clusters)
    labels = fcluster(z, k, criterion="maxclust") if k > 1 else np.ones(n, np.int64)
    total = weights.sum()
    out = []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        members = prefix[idx]
        # medoid: minimises the sum of squared distances to the members = maximises dot with the member sum
        medoid = idx[int(np.argmax(members @ members.sum(axis=0)))]
        out.append((int(medoid), float(weights[idx].sum() / total)))
    out.sort(key=lambda t: (-t[1], t[0]))
    return out


def _usable_events(interactions_positive: pd.DataFrame, emb_table: pd.DataFrame
                   ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Events (user_id, item_id, t in us, row = the item's row in emb_table) whose item embedding is available at
    the event, and the counts of the skipped ones."""
    item_index = pd.Index(emb_table["item_id"].to_numpy(np.int64))
    ev = interactions_positive[["user_id", "item_id", "timestamp"]].copy()
    ev["row"] = item_index.get_indexer(ev["item_id"].to_numpy(np.int64))
    ev["t"] = pd.to_datetime(ev["timestamp"], utc=True, cache=False).dt.as_unit("us").astype("int64").to_numpy()
    known = ev["row"].to_numpy() >= 0
    usable = known.copy()
    if "event_timestamp" in emb_table.columns:
        avail = pd.to_datetime(emb_table["event_timestamp"], utc=True, cache=False).dt.as_unit("us")
        avail = avail.astype("int64").to_numpy()
        usable[known] = ev["t"].to_numpy()[known] >= avail[ev["row"].to_numpy()[known]]
    skips = {"events_without_embedding": int((~known).sum()),
             "events_before_availability": int((known & ~usable).sum())}
    return ev.loc[usable], skips


def interest_skips(interactions_positive: pd.DataFrame, item_embeddings: pd.DataFrame) -> dict[str, int]:
    """How many positive events interest mining skips: items without an embedding, events before the item's
    availability (its event_timestamp). For the run summary."""
    return _usable_events(interactions_positive, item_embeddings.drop_duplicates("item_id", keep="last"))[1]


def mine_interests(interactions_positive: pd.DataFrame, item_embeddings: pd.DataFrame,
                   snapshot_times, cfg: InterestConfig | None = None, *, sid_levels: int) -> pd.DataFrame:
    """Interest snapshots (see module doc) for every user with positives before some snapshot time.

    interactions_positive: user_id, item_id, timestamp (already filtered to positives, e.g. ds.is_positive).
    item_embeddings: contracts §3 table (item_id, embedding, sid_0..sid_{sid_levels-1}, ...).
    snapshot_times: sorted tz-aware timestamps (e.g. `daily_snapshots(start, end)`).
    sid_levels: FeatureConfig.sid_levels (L); the item table must have exactly that many sid columns.
    """
    cfg = cfg or InterestConfig()
    snaps = pd.DatetimeIndex(snapshot_times)
    if snaps.tz is None:
        snaps = snaps.tz_localize("UTC")
    snaps = snaps.tz_convert("UTC").as_unit("us").sort_values()
    snap_ns = snaps.asi8

    emb_table = item_embeddings.drop_duplicates("item_id", keep="last")
    emb = np.stack(emb_table["embedding"].map(lambda v: np.asarray(v, np.float32)).to_list()).astype(np.float32)
    d = emb.shape[1]
    if cfg.prefix_dim > d:
        raise DataError(f"interests: prefix_dim {cfg.prefix_dim} exceeds embedding dim {d}", column="embedding")
    emb = _unit(emb)
    prefix_all = _unit(emb[:, : cfg.prefix_dim])
    sid_cols = check_sid_columns(emb_table, sid_levels)
    n_lvl = len(sid_cols)
    sids_all = emb_table[sid_cols].to_numpy(np.int64)

    ev, skips = _usable_events(interactions_positive, emb_table)
    if any(skips.values()):
        log.warning("interest mining skipped %d positive events of items without an embedding and %d before their "
                    "item's availability (item table event_timestamp)", skips["events_without_embedding"],
                    skips["events_before_availability"])
    ev = ev.sort_values(["user_id", "t", "item_id"], kind="stable")

    hl_us = cfg.half_life_days * 86400e6
    K, N, P, W = cfg.k_max, cfg.recent_n, cfg.prefix_dim, cfg.window
    rows: dict[str, list] = {k: [] for k in (
        "user_id", "event_timestamp", "hist_len", "mean_emb", "recency_emb", "last_emb", "centroids",
        "centroid_weights", "centroid_items", "centroid_sids", "n_centroids", "recent_items", "recent_prefix",
        "recent_sids")}
    # per-user slices of the sorted arrays (what ev.groupby("user_id", sort=True) yields, without its overhead)
    u_all = ev["user_id"].to_numpy(np.int64)
    t_all, r_all, i_all = ev["t"].to_numpy(), ev["row"].to_numpy(), ev["item_id"].to_numpy(np.int64)
    cuts = np.flatnonzero(u_all[1:] != u_all[:-1]) + 1
    starts, ends = np.concatenate([[0], cuts]), np.concatenate([cuts, [len(u_all)]])
    if not len(u_all):
        starts = ends = starts[:0]
    for lo_u, hi_u in tqdm(zip(starts, ends), total=len(starts), desc="interests", disable=None):
        uid = u_all[lo_u]
        t = t_all[lo_u:hi_u]
        r = r_all[lo_u:hi_u]
        items = i_all[lo_u:hi_u]
        counts = np.searchsorted(t, snap_ns, side="left")  # events strictly before each snapshot
        prev = np.concatenate([[0], counts[:-1]])
        emit = np.flatnonzero((counts > 0) & (counts != prev))
        if not len(emit):
            continue
        e_u = emb[r]
        csum = np.cumsum(e_u, axis=0, dtype=np.float64)
        for si in emit:
            c = int(counts[si])
            lo = max(0, c - W)
            win = slice(lo, c)
            # weights relative to the last event (normalisation makes this equal to weighting from the snapshot)
            w = np.exp2((t[win] - t[c - 1]) / hl_us)
            mean = _unit((csum[c - 1] / c)[None])[0]
            rec = _unit((w[:, None] * e_u[win]).sum(axis=0)[None])[0]
            clusters = cluster_interests(prefix_all[r[win]], w, cfg)
            cent = np.zeros((K, d), np.float32)
            cw = np.zeros(K, np.float32)
            citems = np.full(K, -1, np.int64)
            csid = np.full((K, n_lvl), -1, np.int64)
            for k, (m, share) in enumerate(clusters[:K]):
                cent[k] = e_u[lo + m]
                cw[k] = share
                citems[k] = items[lo + m]
                csid[k] = sids_all[r[lo + m]]
            recent = np.arange(c - 1, max(-1, c - 1 - N), -1)  # most recent first
            ritems = np.full(N, -1, np.int64)
            ritems[: len(recent)] = items[recent]
            rpref = np.zeros((N, P), np.float32)
            rpref[: len(recent)] = prefix_all[r[recent]]
            rsid = np.full((N, n_lvl), -1, np.int64)
            rsid[: len(recent)] = sids_all[r[recent]]
            rows["user_id"].append(uid)
            rows["event_timestamp"].append(snap_ns[si])
            rows["hist_len"].append(c)
            rows["mean_emb"].append(mean.astype(np.float32))
            rows["recency_emb"].append(rec.astype(np.float32))
            rows["last_emb"].append(e_u[c - 1].astype(np.float32))
            rows["centroids"].append(cent.ravel())
            rows["centroid_weights"].append(cw)
            rows["centroid_items"].append(citems)
            rows["centroid_sids"].append(csid.ravel())
            rows["n_centroids"].append(min(len(clusters), K))
            rows["recent_items"].append(ritems)
            rows["recent_prefix"].append(rpref.ravel())
            rows["recent_sids"].append(rsid.ravel())
    out = pd.DataFrame(rows)
    out["user_id"] = out["user_id"].astype(np.int64)
    out["event_timestamp"] = pd.to_datetime(np.asarray(rows["event_timestamp"], np.int64), unit="us", utc=True)
    out["event_timestamp"] = out["event_timestamp"].dt.as_unit("us")
    out["hist_len"] = out["hist_len"].astype(np.int64)
    out["n_centroids"] = out["n_centroids"].astype(np.int64)
    return out.sort_values(["event_timestamp", "user_id"], kind="stable").reset_index(drop=True)
