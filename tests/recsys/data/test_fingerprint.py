"""prepare into a folder holding a dataset: reuse only from the same source and config, never replace silently."""

from __future__ import annotations

import os

import pytest

from recsys.data.config import DataConfig
from recsys.data.prepare import prepare_dataset
from recsys.errors import DataError
from recsys.world.config import WorldConfig


def test_same_source_is_reused(write_source, config, tmp_path):
    src = write_source()
    first = prepare_dataset(config(src), tmp_path / "out")
    stamp = (tmp_path / "out" / "manifest.json").stat().st_mtime_ns
    (src / "items.parquet").write_bytes((src / "items.parquet").read_bytes())  # same bytes, new mtime
    again = prepare_dataset(config(src), tmp_path / "out")
    assert again.manifest.source_fingerprint == first.manifest.source_fingerprint != ""
    assert again.manifest.content_hash == first.manifest.content_hash
    assert (tmp_path / "out" / "manifest.json").stat().st_mtime_ns == stamp


def test_another_source_or_config_is_refused(write_source, config, tables, tmp_path):
    items, inter = tables
    src = write_source()
    out = tmp_path / "out"
    first = prepare_dataset(config(src), out)
    with pytest.raises(DataError) as err:
        prepare_dataset(config(src, split={"valid_fraction": 0.2, "test_fraction": 0.3}, unknown_items="skip"), out)
    msg = str(err.value)
    assert msg.startswith(f"{out}: holds a dataset prepared from another source/config")
    assert "(differing: data.split.test_fraction, data.unknown_items)" in msg
    assert "pass --force (CLI) / reuse=False to replace it" in msg
    inter.loc[0, "click"] = 1 - inter.loc[0, "click"]
    inter.to_parquet(src / "interactions.parquet")
    with pytest.raises(DataError, match=r"differing: file interactions.parquet \(changed\)"):
        prepare_dataset(config(src), out)
    other = write_source(name="other")
    with pytest.raises(DataError, match=r"differing: data.path\)"):
        prepare_dataset(config(other), out)
    assert prepare_dataset(config(src), out, reuse=False).manifest.content_hash != first.manifest.content_hash
    assert prepare_dataset(config(src), out).manifest.source_fingerprint != first.manifest.source_fingerprint


def test_synthetic_world_config_is_part_of_the_fingerprint(tmp_path):
    world = WorldConfig(n_items=30, n_users=12, n_days=8, image_size=16, audio_seconds=0.2)
    cfg = DataConfig(source="synthetic")
    first = prepare_dataset(cfg, tmp_path / "out", world=world)
    assert first.manifest.source_inputs["world"]["seed"] == world.seed
    with pytest.raises(DataError, match=r"differing: world.seed\)"):
        prepare_dataset(cfg, tmp_path / "out", world=world.model_copy(update={"seed": world.seed + 1}))
    assert prepare_dataset(cfg, tmp_path / "out", world=world).manifest.content_hash == first.manifest.content_hash


def test_a_folder_that_is_not_a_dataset_is_never_replaced(write_source, config, tmp_path):
    src = write_source()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for reuse in (True, False):
        with pytest.raises(DataError, match="holds no prepared dataset"):
            prepare_dataset(config(src), busy, reuse=reuse)
    assert (busy / "notes.txt").read_text() == "mine"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="afile: exists and is not a folder"):
        prepare_dataset(config(src), tmp_path / "afile")
    with pytest.raises(DataError, match="afile: cannot read or write"):
        prepare_dataset(config(src), tmp_path / "afile" / "out")
    (tmp_path / "empty").mkdir()
    assert prepare_dataset(config(src), tmp_path / "empty").root == tmp_path / "empty"


def test_old_or_corrupt_manifest(write_source, config, tmp_path):
    src = write_source()
    out = tmp_path / "out"
    prepare_dataset(config(src), out)
    (out / "manifest.json").write_text('{"version": "1", "name": "x"}')
    with pytest.raises(DataError, match="dataset format version '1'.*re-prepare"):
        prepare_dataset(config(src), out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json: corrupt manifest"):
        prepare_dataset(config(src), out)
    assert prepare_dataset(config(src), out, reuse=False).manifest.source_fingerprint


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes everything")
def test_unwritable_output_parent(write_source, config, tmp_path):
    src = write_source()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DataError, match="cannot read or write"):
            prepare_dataset(config(src), locked / "out")
    finally:
        locked.chmod(0o700)
