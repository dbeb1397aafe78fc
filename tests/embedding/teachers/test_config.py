"""TeacherConfig: unknown keys and bad values are errors naming the key; the thread setting's one meaning."""

from __future__ import annotations

import pytest

from embedding.teachers import TeacherConfig
from recsys.config_io import load_model
from recsys.errors import ConfigError


def test_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="sasrec.layerz"):
        load_model(TeacherConfig, None, ["sasrec.layerz=3"])
    with pytest.raises(ConfigError, match="two_tower.loss"):
        load_model(TeacherConfig, None, ["two_tower.loss=hinge"])


def test_threads_are_a_positive_count_or_every_core():
    assert TeacherConfig().num_threads == 1 and TeacherConfig(num_threads=None).num_threads is None
    with pytest.raises(ValueError, match="num_threads"):
        TeacherConfig(num_threads=0)
