"""What items really have: media paths that survive prepare, counted missing files, modalities, availability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.dataset import load_dataset
from recsys.data.prepare import prepare_dataset
from recsys.errors import DataError


def test_relative_media_paths_resolve_against_the_source_folder(write_source, config, tables, tmp_path):
    items, inter = tables
    src = tmp_path / "src"
    (src / "media").mkdir(parents=True)
    (src / "media" / "1.jpg").write_bytes(b"jpeg")
    (src / "media" / "2a.png").write_bytes(b"png")
    (src / "media" / "3.wav").write_bytes(b"wav")
    items = items.assign(image_paths=[["media/1.jpg"], ["media/2a.png", "media/2b.png"], [], [], ["gone.jpg"]],
                         audio_path=[None, None, "media/3.wav", "media/4.wav", None])
    write_source(items=items)
    (tmp_path / "elsewhere").mkdir()
    ds = load_dataset(prepare_dataset(config(src), tmp_path / "elsewhere" / "out").root)
    by_id = ds.items.set_index("item_id")
    assert ds.media_path(by_id.loc[1, "image_paths"][0]).read_bytes() == b"jpeg"
    assert ds.media_path(by_id.loc[3, "audio_path"]).read_bytes() == b"wav"
    assert by_id.loc[2, "image_paths"] == [str((src / "media" / n).resolve()) for n in ("2a.png", "2b.png")]
    assert ds.manifest.skipped["missing_image_files"] == 2   # 2b.png, gone.jpg (paths kept: encoders report them)
    assert ds.manifest.skipped["missing_audio_files"] == 1   # 4.wav
    s = ds.summary()
    assert (s["items_with_image"], s["items_with_audio"], s["items_with_text"]) == (2, 1, 5)
    assert (s["skipped missing_image_files"], s["skipped missing_audio_files"]) == (2, 1)
    assert ds.manifest.modalities == ["text", "image", "audio"]


def test_modalities_list_only_what_items_have(write_source, config, tables, tmp_path):
    """Precomputed-vector-only items: no text, no media, vectors counted per name."""
    items, inter = tables
    items = items.drop(columns=["title"]).assign(
        image_paths=[["missing.jpg"]] + [[]] * 4,
        vec_audio=[[0.1, 0.2], [0.3, 0.4], None, [0.5, 0.6], None],
        vec_clip=[[1.0, 0.0, 0.0]] * 5,
        vec_image=[None] * 5)
    ds = prepare_dataset(config(write_source(items=items)), tmp_path / "out")
    s = ds.summary()
    assert ds.manifest.modalities == ["audio"]  # the only image file is missing, vec_image is empty
    assert (s["items_with_text"], s["items_with_image"], s["items_with_audio"]) == (0, 0, 0)
    assert (s["items_with_vec_audio"], s["items_with_vec_clip"], s["items_with_vec_image"]) == (3, 5, 0)
    assert s["modalities"] == "audio"
    again = load_dataset(tmp_path / "out")
    assert np.allclose(np.stack(again.items["vec_clip"]), [[1.0, 0.0, 0.0]] * 5)


@pytest.mark.parametrize("vectors, expect", [
    ([[0.1, 0.2], [0.3], None, None, None], "mixed or zero lengths"),
    ([[0.1, float("nan")], None, None, None, None], "not lists of finite numbers"),
    (["0.1,0.2", None, None, None, None], "not lists of finite numbers"),
])
def test_bad_precomputed_vectors(write_source, config, tables, tmp_path, vectors, expect):
    items, inter = tables
    with pytest.raises(DataError, match=f"items.parquet: column 'vec_audio': .*{expect}"):
        prepare_dataset(config(write_source(items=items.assign(vec_audio=vectors))), tmp_path / "out")


def test_item_available_at_is_the_first_appearance(write_source, config, tables, tmp_path, caplog):
    items, inter = tables
    first = inter.groupby("item_id")["timestamp"].min()
    items = items.assign(created_at=[first[1] + pd.Timedelta(days=30), first[2] - pd.Timedelta(days=1),
                                     first[3] + pd.Timedelta(seconds=1), first[4], first[5] - pd.Timedelta(days=2)])
    with caplog.at_level("WARNING"):
        ds = prepare_dataset(config(write_source(items=items)), tmp_path / "out")
    available = ds.item_available_at()
    assert str(available.dtype) == "datetime64[us, UTC]" and available.index.name == "item_id"
    assert available.to_dict() == {1: first[1], 2: first[2] - pd.Timedelta(days=1), 3: first[3], 4: first[4],
                                   5: first[5] - pd.Timedelta(days=2)}
    assert ds.summary()["items_created_after_first_interaction"] == 2
    assert "2 of 5 items have created_at after their first interaction" in caplog.text
    assert load_dataset(tmp_path / "out").item_available_at().equals(available)
