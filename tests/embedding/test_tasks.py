"""Contrastive pair builders (train split only, hold-out by anchor) and the per-batch dataset weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedding.tasks import (
    PairConfig,
    build_i2i_pairs,
    build_label_pairs,
    build_pair_sets,
    build_q2i_pairs,
    dataset_weights,
    title_keywords,
)
from recsys.data.dataset import Dataset
from recsys.data.split import TemporalSplit


def test_i2i_pairs_window_dedupe_holdout(pair_world):
    ds = pair_world.ds
    ps = build_i2i_pairs(ds, PairConfig(holdout_fraction=0.2))
    assert ps.symmetric and len(ps.train) > 0 and len(ps.holdout) > 0
    assert (ps.train["query"] < ps.train["target"]).all()  # unordered, canonical
    assert not ps.train.duplicated(["query", "target"]).any()
    held = set(ps.holdout["query"])
    assert not (ps.train["query"].isin(held) | ps.train["target"].isin(held)).any()  # never trained on
    # pairs stay within clusters (users engage one cluster)
    cl = lambda s: (s - 1000) // pair_world.per_cluster  # noqa: E731
    assert (cl(ps.train["query"]) == cl(ps.train["target"])).all()
    capped = build_i2i_pairs(ds, PairConfig(i2i_max_pairs_per_item=2, holdout_fraction=0.0))
    counts = pd.concat([capped.train["query"], capped.train["target"]]).value_counts()
    assert counts.max() <= 2


def test_pair_builders_see_train_split_only(pair_world):
    ds = pair_world.ds
    before = build_pair_sets(ds, PairConfig(), ["i2i", "q2i", "label"])
    # cross-cluster positives in valid/test periods
    late = pd.DataFrame({"user_id": 999, "item_id": ds.items["item_id"].to_numpy()[::7],
                         "timestamp": ds.split.train_end + pd.to_timedelta(np.arange(23), unit="min"),
                         "like": np.float32(1.0)})
    late2 = late.assign(timestamp=ds.split.valid_end + pd.to_timedelta(np.arange(23), unit="min"), user_id=998)
    grown = Dataset(ds.manifest, ds.items, pd.concat([ds.interactions, late, late2], ignore_index=True))
    after = build_pair_sets(grown, PairConfig(), ["i2i", "q2i", "label"])
    assert set(before) == set(after) == {"i2i", "q2i", "label"}
    for k in before:
        pd.testing.assert_frame_equal(before[k].train, after[k].train)
        pd.testing.assert_frame_equal(before[k].holdout, after[k].holdout)
    # ... while the same rows inside the train period do change the pairs
    moved = TemporalSplit(ds.split.valid_end + pd.Timedelta(days=1), ds.split.valid_end + pd.Timedelta(days=2))
    grown.manifest = type(ds.manifest).from_dict({**ds.manifest.to_dict(), "split": moved.to_manifest()})
    assert len(build_i2i_pairs(grown).train) + len(build_i2i_pairs(grown).holdout) > \
        len(before["i2i"].train) + len(before["i2i"].holdout)


def test_q2i_from_items_and_labels(pair_world):
    ds = pair_world.ds
    assert title_keywords("The Comet of Doom (1999)") == ["comet", "doom"]
    ps = build_q2i_pairs(ds, PairConfig(holdout_fraction=0.2))
    assert ps.query_kind == "text" and ps.info["source"] == "items"
    allp = pd.concat([ps.train, ps.holdout])
    items = ds.items.set_index("item_id")
    for q, group in allp.groupby("query"):
        if q.startswith("tag"):
            expect = {i for i, t in items["tags"].items() if q in t}
        else:
            g, w = q.split(" ")
            expect = {i for i, r in items.iterrows()
                      if g in [c.lower() for c in r["categories"]] and w in title_keywords(r["title"])}
        assert set(group["target"]) == expect, q
    assert not set(ps.train["query"]) & set(ps.holdout["query"])
    # items created after the train cut-off give no content pairs
    late = ds.items.copy()
    late["created_at"] = ds.split.train_end + pd.Timedelta(days=1)
    none = Dataset(ds.manifest, late, ds.interactions)
    assert build_q2i_pairs(none) is None and build_label_pairs(none) is None
    lab = build_label_pairs(ds, PairConfig(label_min_items=3))
    assert {"category: genre0", "category: common", "tag: tag0"} <= set(lab.train["target"])
    assert lab.query_kind == "item" and lab.target_kind == "text"


def test_queries_table_is_used_when_present(pair_world):
    ds = pair_world.ds
    q = pd.DataFrame({"query_text": ["space film", "space film", "old river"], "item_id": [1000, 1001, 1005]})
    ds2 = Dataset(ds.manifest, ds.items, ds.interactions, queries=q)
    ps = build_q2i_pairs(ds2, PairConfig(holdout_fraction=0.0))
    assert ps.info["source"] == "queries" and len(ps.train) == 3


def test_dataset_weights():
    assert dataset_weights({"a": 100, "b": 25}, "proportional") == {"a": 0.8, "b": 0.2}
    assert dataset_weights({"a": 100, "b": 25}, "sqrt") == pytest.approx({"a": 10 / 15, "b": 5 / 15})
    assert dataset_weights({"a": 100, "b": 25}, "uniform") == {"a": 0.5, "b": 0.5}
    assert dataset_weights({"a": 1, "b": 1}, explicit={"b": 2.0}) == {"b": 1.0}
    with pytest.raises(ValueError, match="unknown"):
        dataset_weights({"a": 1}, explicit={"zzz": 1.0})
