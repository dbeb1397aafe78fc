"""A feature service's columns computed in memory from an interaction history, at one snapshot time.

Why: a lifetime simulation asks a ranker to score users x candidates day after day while the history grows with
the policy's own impressions; going through parquet + Feast for every simulated day would be slow and would need
one feature repository per policy. This module applies the SAME builders (recsys.interests, recsys.statistics),
the SAME match-feature functions (features.match_features) and the SAME defaults (features.serving.finalize) as
the Feast path, at a daily snapshot, so the simulated ranker sees features defined exactly as in training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.match_features import compute_match_frame
from features.serving import finalize
from recsys.data.schema import PositiveRule
from recsys.interests import InterestConfig, mine_interests
from recsys.statistics import StatsConfig, entity_stats_at


class InMemoryFeatures:
    """Point-in-time features for (user, candidate) pairs from a history frame, as the Feast service defines them.

    layout: `features.serving.service_layout(store, service)` of the service the ranker was trained on.
    """

    def __init__(self, item_embeddings: pd.DataFrame, positive: PositiveRule, layout: dict,
                 interest_cfg: InterestConfig | None = None, stats_cfg: StatsConfig | None = None):
        self.items = item_embeddings.drop_duplicates("item_id", keep="last").set_index("item_id")
        self.positive = positive
        self.layout = layout
        self.interest_cfg = interest_cfg or InterestConfig()
        self.stats_cfg = stats_cfg or StatsConfig()

    def frame(self, snapshot: pd.Timestamp, user_ids: np.ndarray, candidates: np.ndarray,
              history: pd.DataFrame) -> pd.DataFrame:
        """Rows in row-major order: row i*C+j is (user_ids[i], candidates[i, j])."""
        snapshot = pd.Timestamp(snapshot).tz_convert("UTC") if pd.Timestamp(snapshot).tzinfo else \
            pd.Timestamp(snapshot, tz="UTC")
        snaps = pd.DatetimeIndex([snapshot])
        hist = history.loc[history["timestamp"] < snapshot]
        pos = (hist[self.positive.column] >= self.positive.min_value).to_numpy()
        users = np.asarray(user_ids, dtype=np.int64)
        cands = np.asarray(candidates, dtype=np.int64)
        out = pd.DataFrame({"user_id": np.repeat(users, cands.shape[1]), "item_id": cands.reshape(-1)})

        wanted = set(self.layout["order"])
        # entity_stats_at == user_stats / item_stats at the one snapshot (same rows and values), faster
        ustats = entity_stats_at(hist, pos, snapshot, "user_id", "user", self.stats_cfg).drop(
            columns="event_timestamp")
        istats = entity_stats_at(hist, pos, snapshot, "item_id", "item", self.stats_cfg).drop(
            columns="event_timestamp")
        mine = hist.loc[pos & hist["user_id"].isin(users).to_numpy(), ["user_id", "item_id", "timestamp"]]
        interests = mine_interests(mine, self.items.reset_index(), snaps, self.interest_cfg)
        interests = interests.drop(columns="event_timestamp")
        item_cols = [c for c in self.items.columns if c not in ("model_version", "event_timestamp")]
        out = (out.merge(ustats, on="user_id", how="left").merge(istats, on="item_id", how="left")
               .merge(interests, on="user_id", how="left")
               .merge(self.items[item_cols], left_on="item_id", right_index=True, how="left"))
        derived = [c for c in self.layout["derived"] if c in wanted]
        if derived:
            match = compute_match_frame(out)
            for c in derived:
                out[c] = match[c].to_numpy()
        keep = ["user_id", "item_id"] + [c for c in self.layout["order"] if c in out.columns]
        return finalize(out[keep], self.layout)
