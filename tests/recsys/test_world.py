"""Synthetic world: determinism, sizes, missing modalities, readable media, hidden collaborative part."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image
from pydantic import ValidationError

from recsys.data.adapters.synthetic import prepare_synthetic
from recsys.data.dataset import load_dataset
from recsys.world import TOPICS, BehaviourLaw, WorldConfig, generate_world, load_world
from recsys.world.latents import stream
from recsys.world.render import topic_pitch
from recsys.world.replay import SECONDS_PER_DAY, Slate, replay_day

SMALL = dict(n_items=300, n_users=60, n_days=20, image_size=32, audio_seconds=0.5)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cfg = WorldConfig(seed=3, **SMALL)
    root = tmp_path_factory.mktemp("world") / "ds"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. NaN samples in a clip
        prepare_synthetic(cfg, root)
    return cfg, load_dataset(root)


def test_same_seed_same_dataset_other_seed_differs(small, tmp_path):
    cfg, ds = small
    again = prepare_synthetic(cfg, tmp_path / "again")
    assert again.manifest.content_hash == ds.manifest.content_hash
    again = load_dataset(tmp_path / "again")
    pd.testing.assert_frame_equal(again.items, ds.items)
    pd.testing.assert_frame_equal(again.interactions, ds.interactions)
    pd.testing.assert_frame_equal(again.queries, ds.queries)
    other = prepare_synthetic(cfg.model_copy(update={"seed": 4}), tmp_path / "other")
    assert other.manifest.content_hash != ds.manifest.content_hash
    assert not other.interactions["like"].equals(ds.interactions["like"])


def test_sizes_labels_and_time(small):
    cfg, ds = small
    assert len(ds.items) == cfg.n_items
    assert len(ds.users) == cfg.n_users
    assert set(ds.manifest.labels) == {"like", "finish", "watch_ratio"}
    assert ds.positive.column == "like" and ds.positive.min_value == 1.0
    assert set(ds.manifest.modalities) == {"text", "image", "audio"}
    inter = ds.interactions
    for c in ("like", "finish"):
        assert set(inter[c].unique()) <= {0.0, 1.0}
    assert inter["watch_ratio"].between(0, 1).all()
    assert ((inter["finish"] == 1) == (inter["watch_ratio"] >= cfg.finish_threshold)).all()
    # one session of session_size distinct items per active user-day, within the world's period
    day = (inter["timestamp"] - pd.Timestamp(cfg.start_date, tz="UTC")).dt.days
    assert day.min() >= 0 and day.max() < cfg.n_days
    per_session = inter.groupby([inter["user_id"], day])["item_id"].agg(["size", "nunique"])
    assert (per_session["size"] == cfg.session_size).all() and (per_session["nunique"] == cfg.session_size).all()
    # items are only shown after their creation; some items are created in the last days (cold start)
    created = inter["item_id"].map(ds.items.set_index("item_id")["created_at"])
    assert (inter["timestamp"] > created).all()
    end = pd.Timestamp(cfg.start_date, tz="UTC") + pd.Timedelta(days=cfg.n_days)
    assert (ds.items["created_at"] > end - pd.Timedelta(days=3)).sum() > 0
    # split fractions from the config
    frac = ds.split.period(inter["timestamp"]).value_counts(normalize=True)
    assert frac["valid"] == pytest.approx(cfg.split[0], abs=0.02)
    assert frac["test"] == pytest.approx(cfg.split[1], abs=0.02)
    # some user activity varies day to day (return law), not everyone every day
    active_days = inter.groupby("user_id")["timestamp"].apply(lambda t: t.dt.floor("D").nunique())
    assert active_days.min() < cfg.n_days and active_days.max() > 1


def test_like_rate_in_target_band():
    s = generate_world(WorldConfig(n_items=400, n_users=80, n_days=20))
    assert 0.1 <= s.interactions["like"].mean() <= 0.3


def test_missing_modality_rates(tmp_path):
    rates = dict(missing_image=0.3, missing_audio=0.4, missing_title=0.2, missing_description=0.5, missing_tags=0.25)
    cfg = WorldConfig(seed=5, n_items=400, n_users=10, n_days=4, image_size=16, audio_seconds=0.1, n_frames=1,
                      **rates)
    ds = prepare_synthetic(cfg, tmp_path / "ds")
    it = ds.items
    observed = {"missing_image": (it["image_paths"].map(len) == 0).mean(),
                "missing_audio": it["audio_path"].isna().mean(), "missing_title": it["title"].isna().mean(),
                "missing_description": it["description"].isna().mean(),
                "missing_tags": (it["tags"].map(len) == 0).mean()}
    for k, rate in rates.items():
        assert observed[k] == pytest.approx(rate, abs=0.08), k
    # nothing missing when the rates are 0
    cfg0 = cfg.model_copy(update={k: 0.0 for k in rates})
    s = generate_world(cfg0)
    assert s.items["title"].notna().all() and s.items["tags"].map(len).gt(0).all()


def test_media_readable_and_text_fields(small):
    cfg, ds = small
    it = ds.items
    with_img = it.loc[it["image_paths"].map(len) > 0]
    assert with_img["image_paths"].map(len).eq(cfg.n_frames).all()
    for paths in with_img["image_paths"].head(20):
        assert paths[0].startswith("media/img/")
        for p in paths:
            with Image.open(ds.media_path(p)) as im:
                assert im.format == "PNG" and im.size == (cfg.image_size, cfg.image_size) and im.mode == "RGB"
    for p in it["audio_path"].dropna().head(20):
        audio, sr = sf.read(ds.media_path(p))
        assert sr == cfg.sample_rate and audio.ndim == 1
        assert len(audio) == int(round(cfg.audio_seconds * cfg.sample_rate)) and np.abs(audio).max() > 0.1
    names = {t[0] for t in TOPICS[:cfg.n_topics]}
    assert it["categories"].map(lambda c: 1 <= len(c) <= 2 and set(c) <= names).all()
    assert it["author"].notna().all()
    # queries: 2-4 words, mostly from the vocabulary of the item's topic(s)
    q = ds.queries.merge(it[["item_id", "categories"]], on="item_id")
    assert len(q) > 0.5 * cfg.n_items
    vocab = {name: set(words) for name, words in TOPICS}
    hit = q.apply(lambda r: len(set(r["query_text"].split()) & set().union(*[vocab[c] for c in r["categories"]])),
                  axis=1)
    assert (hit >= 1).all() and q["query_text"].str.split().map(len).between(2, 4).all()


def test_load_world_round_trip(small):
    cfg, ds = small
    world = load_world(ds.root)
    fresh = generate_world(cfg).world
    assert world.config == cfg
    np.testing.assert_array_equal(world.item_ids, ds.items["item_id"].to_numpy())
    for name in ("topic_mix", "quality", "community", "created_day", "style"):
        np.testing.assert_array_equal(getattr(world.items, name), getattr(fresh.items, name))
    np.testing.assert_array_equal(world.users.interest, fresh.users.interest)
    assert world.law.bias == fresh.law.bias and world.law.satisfaction_ref == fresh.law.satisfaction_ref
    u, i = np.arange(10)[:, None], np.arange(20)[None]
    np.testing.assert_array_equal(world.law.utility(u, i, 5.0), fresh.law.utility(u, i, 5.0))
    # available items: exactly those created before the day
    avail = world.available_items(3)
    created = ds.items.set_index("item_id")["created_at"]
    assert (created.loc[avail] < world.timestamp(3)).all()
    assert (created.drop(avail) >= world.timestamp(3)).all()
    assert world.end_day == cfg.n_days
    meta = json.loads((ds.root / "world" / "world.json").read_text())
    assert meta["topics"] == world.topic_names


def test_behaviour_law_save_load_and_common_noise(tmp_path):
    law = generate_world(WorldConfig(n_items=50, n_users=10, n_days=3)).world.law
    law.save(tmp_path)
    back = BehaviourLaw.load(tmp_path)
    noise = law.draw_noise(np.random.default_rng(0), (10, 5))
    u, i = np.arange(10)[:, None], np.arange(5)[None] + np.arange(10)[:, None]
    a, b = law.respond(u, i, noise=noise, day=2.0), back.respond(u, i, noise=noise, day=2.0)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # higher satisfaction -> higher return probability
    p = law.return_probability(np.array([0.0, 0.5, 1.5]), np.zeros(3, int))
    assert p[0] < p[1] < p[2]
    assert law.like_probability(u, i).shape == (10, 5)


def _image_features(ds, paths):
    with Image.open(ds.media_path(paths[0])) as im:
        a = np.asarray(im, np.float32)
    return [*a.mean((0, 1)), a.std(), a.max(2).mean() - a.min(2).mean()]


def _audio_features(ds, path):
    x, sr = sf.read(ds.media_path(path))
    spec = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    return [np.sqrt((x ** 2).mean()), (np.diff(np.sign(x)) != 0).mean(), (spec * freqs).sum() / spec.sum(),
            freqs[spec.argmax()]]


def test_collaborative_part_hidden_from_content_but_drives_likes(small):
    cfg, ds = small
    world = load_world(ds.root)
    it = ds.items
    idx = world.item_index(it["item_id"])
    quality, hype = world.items.quality[idx], world.items.hype[idx]
    feats = {}
    img = it["image_paths"].map(len) > 0
    f = np.array([_image_features(ds, p) for p in it.loc[img, "image_paths"]])
    for j in range(f.shape[1]):
        feats[f"image_{j}"] = (img.to_numpy(), f[:, j])
    aud = it["audio_path"].notna()
    f = np.array([_audio_features(ds, p) for p in it.loc[aud, "audio_path"]])
    for j in range(f.shape[1]):
        feats[f"audio_{j}"] = (aud.to_numpy(), f[:, j])
    everyone = np.ones(len(it), bool)
    feats["title_len"] = (everyone, it["title"].fillna("").str.len().to_numpy(float))
    feats["desc_len"] = (everyone, it["description"].fillna("").str.len().to_numpy(float))
    feats["n_tags"] = (everyone, it["tags"].map(len).to_numpy(float))
    for name, (mask, values) in feats.items():
        for latent_name, latent in (("quality", quality), ("hype", hype)):
            r = np.corrcoef(latent[mask], values)[0, 1]
            assert abs(r) < 0.25, f"{latent_name} leaks into {name}: r={r:.2f}"
    # ... while the content is visible: the clip's dominant pitch follows its topic's pitch band
    a = np.flatnonzero(aud.to_numpy())
    dominant = f[:, 3]
    band = np.array([topic_pitch(int(t), cfg.n_topics) for t in world.items.primary_topic[idx[a]]])
    assert pd.Series(np.log(dominant)).corr(pd.Series(np.log(band)), method="spearman") > 0.6
    # ... and quality drives engagement: item like rate rises with quality
    stats = ds.interactions.groupby("item_id")["like"].agg(["mean", "size"])
    stats = stats.loc[stats["size"] >= 10]
    r = np.corrcoef(stats["mean"], world.items.quality[world.item_index(stats.index)])[0, 1]
    assert r > 0.3, r


def test_content_and_collaborative_each_explain_engagement(small):
    _, ds = small
    from sklearn.metrics import roc_auc_score
    world = load_world(ds.root)
    inter = ds.interactions
    u, i = world.user_index(inter["user_id"]), world.item_index(inter["item_id"])
    y = inter["like"].to_numpy()
    auc_content = roc_auc_score(y, world.law.content_utility(u, i))
    auc_collab = roc_auc_score(y, world.law.collaborative_utility(u, i, world.day_of(inter["timestamp"])))
    auc_all = roc_auc_score(y, world.law.utility(u, i, world.day_of(inter["timestamp"])))
    assert auc_content > 0.65 and auc_collab > 0.65
    assert auc_all > max(auc_content, auc_collab) + 0.05


def test_config_rejects_unknown_and_bad_keys():
    with pytest.raises(ValidationError, match="n_itemz"):
        WorldConfig(n_itemz=5)
    with pytest.raises(ValidationError, match="interest_peaks"):
        WorldConfig(n_topics=3, interest_peaks=(2, 5))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_audio_and_images_of_every_topic_and_style_render_cleanly():
    from recsys.world.render import render_audio, render_images
    cfg = WorldConfig(n_items=500, n_users=5, n_days=3, n_topics=16, n_styles=8, secondary_topic_prob=0.5)
    world = generate_world(cfg).world
    assert len(set(world.items.primary_topic)) == 16 and len(set(world.items.style)) == 8
    for i in range(cfg.n_items):
        x = render_audio(world, i, stream(0, 1, i))
        assert x.dtype == np.float32 and len(x) == cfg.sample_rate * cfg.audio_seconds
        assert np.isfinite(x).all() and 0.5 < np.abs(x).max() <= 0.81
    for i in range(0, cfg.n_items, 10):
        frames = render_images(world, i, stream(0, 2, i))
        assert len(frames) == cfg.n_frames and frames[0].size == (cfg.image_size,) * 2


# ---- the shared day (recsys/world/replay.py) ---------------------------------------------------------------------

def test_replay_day_follows_the_return_and_response_law():
    world = generate_world(WorldConfig(n_items=60, n_users=40, n_days=3)).world
    law, users = world.law, np.arange(0, 40, 2)                               # a subset of the users
    rng = np.random.default_rng(0)
    memory = rng.uniform(0, 1.5, len(users))
    draws = rng.random(len(users))
    slates = []

    def policy(active):
        slates.append(active)
        items = np.tile(np.arange(5), (len(active), 1)) + active[:, None]
        return Slate(items, np.full(items.shape, 3.25), law.draw_noise(np.random.default_rng(1), items.shape))

    day = replay_day(law, users, memory, draws, policy)
    np.testing.assert_array_equal(day.active, draws < law.return_probability(memory, users))
    s = day.sessions
    np.testing.assert_array_equal(s.users, np.flatnonzero(day.active))
    np.testing.assert_array_equal(slates[0], s.users)
    expected = law.respond(users[s.users][:, None], s.items, day=3.25,
                           noise=law.draw_noise(np.random.default_rng(1), s.items.shape))
    for k in expected:
        np.testing.assert_array_equal(s.responses[k], expected[k])
    satisfaction = law.session_satisfaction(expected["like"], expected["watch_ratio"])
    np.testing.assert_allclose(day.memory[day.active], satisfaction)
    drift = law.memory_decay * memory + (1 - law.memory_decay) * law.satisfaction_ref
    np.testing.assert_allclose(day.memory[~day.active], drift[~day.active])
    log = s.log(world.user_ids[users], world.item_ids, world.start)
    assert len(log) == s.items.size and (log["user_id"].to_numpy()[:5] == world.user_ids[users[s.users[0]]]).all()
    assert (log["timestamp"] == world.start + pd.Timedelta(seconds=3.25 * SECONDS_PER_DAY)).all()
    # nobody returns: no session, every memory drifts
    none = replay_day(law, users, memory, np.ones(len(users)), policy)
    assert none.sessions is None and not none.active.any() and len(slates) == 1
    np.testing.assert_allclose(none.memory, drift)

