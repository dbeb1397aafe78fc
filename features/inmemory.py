"""A feature service's columns computed in memory from an interaction history, as of one time.

Why: a lifetime simulation asks a ranker to score users x candidates day after day while the history grows with
the policy's own impressions; going through parquet + Feast for every simulated day would be slow and would need
one feature repository per policy. This module applies the SAME builders (features.interests, features.statistics),
the SAME match-feature functions (features.match_features) and the SAME defaults (features.serving.finalize) as
the Feast path, with the same point-in-time rule, so the simulated ranker sees features defined exactly as in
training (tests/features/test_inmemory.py compares the two).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definitions import FeatureConfig
from features.interests import InterestConfig, mine_interests
from features.match_features import compute_match_frame, derived_feature_registry
from features.schema import CF_ITEM_VECTOR, CF_USER_VECTOR, check_sid_columns
from features.serving import ServiceLayout, finalize
from features.statistics import StatsConfig, entity_stats_asof
from features.tables import interest_config_for
from recsys.data.schema import PositiveRule


class InMemoryFeatures:
    """Point-in-time features for (user, candidate) pairs from a history frame, as the Feast service defines them.

    layout: `features.serving.service_layout(store, service)` of the service the ranker was trained on; cfg: the
    FeatureConfig of that repository (its semantic-ID levels and prefix); collaborative: its user_cf and item_cf
    source tables (required when cfg.cf_dim > 0), as of their event_timestamp like every other row.
    """

    def __init__(self, item_embeddings: pd.DataFrame, positive: PositiveRule, layout: ServiceLayout,
                 cfg: FeatureConfig, interest_cfg: InterestConfig | None = None,
                 stats_cfg: StatsConfig | None = None,
                 collaborative: tuple[pd.DataFrame, pd.DataFrame] | None = None):
        if cfg.cf_dim and collaborative is None:
            raise ValueError("the repository has collaborative views (cf_dim > 0): pass its user_cf and item_cf "
                             "tables as `collaborative`")
        self.collaborative = None if not cfg.cf_dim else tuple(
            t.assign(event_timestamp=pd.to_datetime(t["event_timestamp"], utc=True)) for t in collaborative)
        self.sid_columns = check_sid_columns(item_embeddings, cfg.sid_levels)
        self.item_embeddings = item_embeddings
        created = pd.to_datetime(item_embeddings["event_timestamp"], utc=True)
        self.items = item_embeddings.assign(event_timestamp=created).sort_values("event_timestamp", kind="stable")
        self.positive = positive
        self.layout = layout
        self.cfg = cfg
        self.interest_cfg = interest_config_for(cfg, interest_cfg)
        self.stats_cfg = stats_cfg or StatsConfig()

    def frame(self, at: pd.Timestamp, user_ids: np.ndarray, candidates: np.ndarray,
              history: pd.DataFrame) -> pd.DataFrame:
        """What a point-in-time retrieval at time `at` returns: daily snapshots of floor_day(at) (events before that
        day) and the candidates' embeddings created at or before `at`. Rows in row-major order: row i*C+j is
        (user_ids[i], candidates[i, j])."""
        at = pd.Timestamp(at).tz_convert("UTC") if pd.Timestamp(at).tzinfo else pd.Timestamp(at, tz="UTC")
        day = at.floor("D")
        hist = history.loc[history["timestamp"] < day]
        pos = (hist[self.positive.column] >= self.positive.min_value).to_numpy()
        users = np.asarray(user_ids, dtype=np.int64)
        cands = np.asarray(candidates, dtype=np.int64)
        out = pd.DataFrame({"user_id": np.repeat(users, cands.shape[1]), "item_id": cands.reshape(-1)})

        ustats = entity_stats_asof(hist, pos, day, "user_id", "user", self.stats_cfg).drop(columns="event_timestamp")
        istats = entity_stats_asof(hist, pos, day, "item_id", "item", self.stats_cfg).drop(columns="event_timestamp")
        mine = hist.loc[pos & hist["user_id"].isin(users).to_numpy(), ["user_id", "item_id", "timestamp"]]
        interests = mine_interests(mine, self.item_embeddings, pd.DatetimeIndex([day]), self.interest_cfg,
                                   sid_levels=self.cfg.sid_levels).drop(columns="event_timestamp")
        known = self.items.loc[self.items["event_timestamp"] <= at].drop_duplicates("item_id", keep="last")
        known = known.set_index("item_id")[["embedding", *self.sid_columns]]
        out = (out.merge(ustats, on="user_id", how="left").merge(istats, on="item_id", how="left")
               .merge(interests, on="user_id", how="left")
               .merge(known, left_on="item_id", right_index=True, how="left"))
        if self.collaborative is not None:
            for table, key, column in zip(self.collaborative, ("user_id", "item_id"), (CF_USER_VECTOR, CF_ITEM_VECTOR)):
                asof = table.loc[table["event_timestamp"] <= at].sort_values("event_timestamp", kind="stable")
                asof = asof.drop_duplicates(key, keep="last").set_index(key)[[column]]
                out = out.merge(asof, left_on=key, right_index=True, how="left")
        registry = derived_feature_registry(self.cfg.sid_levels)
        derived = {name: registry[name] for name in self.layout["derived"]}
        if derived:
            match = compute_match_frame(out, out, derived)
            for name in derived:
                out[name] = match[name].to_numpy()
        keep = ["user_id", "item_id"] + [c for c in self.layout["order"] if c in out.columns]
        return finalize(out[keep], self.layout)
