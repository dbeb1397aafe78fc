"""Online serving: documented defaults and flags for unknown ids, and the same frame as offline retrieval, for any
number of semantic-ID levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import match_features as mf
from features.definitions import FULL_SERVICE, SERVICE_BY_VARIANT
from features.schema import sid_columns
from features.serving import rank_frame, service_layout
from recsys.errors import DataError


@pytest.fixture(scope="module")
def repo(fw, tmp_path_factory):
    items, ev = fw.make_world()
    repo = fw.build_repo(tmp_path_factory.mktemp("run"), items, ev)
    repo.materialize(fw.START + pd.Timedelta(days=9))
    return repo


def test_unknown_ids_get_defaults_and_flags(repo):
    f = rank_frame(repo.store, 987654, [100, 555555], FULL_SERVICE)
    assert list(f["item_id"]) == [100, 555555] and f["unknown_user"].all()
    assert list(f["unknown_item"]) == [False, True]
    assert (f["user_impressions"] == 0).all() and (f["hist_len"] == 0).all() and f["user_positive_rate"].isna().all()
    assert f["cos_mean"].isna().all() and (f["hist_sim_count"] == 0).all() and (f["sid_recent_match_l0"] == 0).all()
    assert (f.loc[1, sid_columns(3)] == -1).all() and f.loc[1, "item_impressions"] == 0
    assert f["item_impressions"].dtype == np.int64 and f["sid_2"].dtype == np.int64


def test_layout_reads_defaults_from_the_schema(repo):
    layout = service_layout(repo.store, FULL_SERVICE)
    assert layout["defaults"] == {"item_impressions": 0, "item_positives": 0, "user_impressions": 0,
                                  "user_positives": 0, "hist_len": 0, "sid_0": -1, "sid_1": -1, "sid_2": -1}
    assert layout["derived"] == list(mf.match_feature_registry(3))
    assert service_layout(repo.store, SERVICE_BY_VARIANT["baseline"])["derived"] == []


@pytest.mark.parametrize("levels", [2, 4])
def test_other_sid_levels_build_materialize_and_serve(fw, tmp_path, levels):
    items, ev = fw.make_world(seed=levels, sid_levels=levels)
    repo = fw.build_repo(tmp_path, items, ev, sid_levels=levels)
    t = fw.START + pd.Timedelta(days=8)
    repo.materialize(t)
    cands = [*items["item_id"], 99999]  # the users' own recent items among them: full SID matches exist
    sids, matches = sid_columns(levels), list(mf.sid_match_features(levels))
    online = {u: repo.online(u, cands) for u in (1, 2, 3, 424242)}
    for u, on in online.items():
        assert [c for c in on.columns if c.startswith("sid_") and c[4:].isdigit()] == sids
        assert [c for c in on.columns if c.startswith("sid_") and "match" in c] == matches
        expect = items.set_index("item_id").reindex(cands)[sids].fillna(-1).astype(np.int64)
        np.testing.assert_array_equal(on[sids].to_numpy(), expect.to_numpy())  # every item created before t
        edf = pd.DataFrame({"user_id": u, "item_id": cands, "event_timestamp": t})
        off = repo.historical(edf).drop(columns="event_timestamp")
        pd.testing.assert_frame_equal(on.reset_index(drop=True), off.reset_index(drop=True), check_exact=False,
                                      rtol=1e-12, atol=0)
    both = pd.concat(online.values())
    assert both[f"sid_recent_match_l{levels - 1}"].sum() > 0 and both["sid_recent_match_l0"].lt(1).any()


@pytest.mark.parametrize(("user", "cands", "service", "message"), [
    (1, [100], "ranking_match_v9", r"unknown FeatureService 'ranking_match_v9'; this repository serves \["),
    (1, [], FULL_SERVICE, "the candidate list is empty"),
    (1, [100, "12a"], FULL_SERVICE, "candidate item id '12a' is not an integer id"),
    (1, [100, ""], FULL_SERVICE, "candidate item id '' is not an integer id"),
    (1, [100, 1.5], FULL_SERVICE, "candidate item id 1.5 is not an integer id"),
    (1, [True], FULL_SERVICE, "candidate item id True is not an integer id"),
    (1, [100, -3], FULL_SERVICE, "candidate item id -3 is outside the id range"),
    (1, ["-3"], FULL_SERVICE, "candidate item id -3 is outside the id range"),
    (1, [2**63], FULL_SERVICE, f"candidate item id {2**63} is outside the id range"),
    ("u1", [100], FULL_SERVICE, "user id 'u1' is not an integer id"),
    (1.0, [100], FULL_SERVICE, "user id 1.0 is not an integer id"),
    (-1, [100], FULL_SERVICE, "user id -1 is outside the id range"),
])
def test_malformed_requests_name_the_value(repo, user, cands, service, message):
    with pytest.raises(DataError, match=message):
        repo.online(user, cands, service)


def test_ids_as_decimal_strings_serve_like_ints(repo):
    """A CLI passes its raw comma-separated text; numpy ints come from frames."""
    pd.testing.assert_frame_equal(repo.online("3", [" 100", "555555"]), repo.online(np.int64(3), [100, 555555]))


def test_historical_refuses_an_unknown_service(fw, repo):
    edf = pd.DataFrame({"user_id": [1], "item_id": [100], "event_timestamp": [fw.START]})
    with pytest.raises(DataError, match="unknown FeatureService 'nope'"):
        repo.historical(edf, "nope")


@pytest.mark.parametrize("service", list(SERVICE_BY_VARIANT.values()))
def test_reader_is_bit_identical_to_feast_get_online_features(repo, service):
    """The fast reader against Feast's own online path (every user and item view, the on-demand views, finalize),
    for known and unknown users, known and unknown candidates, in the request's order."""
    from features.serving import OnlineReader, feature_service, finalize

    reader = OnlineReader(repo.store, service)
    cands = [141, 100, 555555, 103, 138, 100, 120]
    for user in (1, 2, 6, 424242):
        fast = reader.rank_frame(user, cands)
        rows = [{"user_id": user, "item_id": c} for c in cands]
        feast = repo.store.get_online_features(features=feature_service(repo.store, service),
                                               entity_rows=rows).to_df()
        feast["user_id"], feast["item_id"] = np.int64(user), np.asarray(cands, np.int64)
        feast = finalize(feast, service_layout(repo.store, service))
        feast = feast[["user_id", "item_id"] + [c for c in feast.columns if c not in ("user_id", "item_id")]]
        pd.testing.assert_frame_equal(fast, feast, check_exact=True)
        assert not fast.drop(columns=["unknown_user", "unknown_item"]).isna().all().any() or user == 424242
