"""The teachers' test world and one trained pair of teachers, shared by the tests of embedding/teachers.

Fixtures:
    teacher_world   cluster/Markov dataset: 200 items in 10 clusters, 60 users, Markov-ish order (easy to learn)
    teacher_cfg     a tiny training budget (seed 3)
    trained         (out_dir, id result, sequence result) trained once with `teacher_cfg`
"""

from __future__ import annotations

import pytest

from embedding.teachers import TeacherConfig, train_teachers
from embedding.teachers.data import cluster_markov_dataset


@pytest.fixture(scope="session")
def teacher_world():
    return cluster_markov_dataset(n_items=200, n_clusters=10, n_users=60, events_per_user=40, seed=0)


@pytest.fixture(scope="session")
def teacher_cfg() -> TeacherConfig:
    return TeacherConfig(seed=3, two_tower={"epochs": 10, "batch": 256}, sasrec={"epochs": 12, "max_len": 20})


@pytest.fixture(scope="session")
def trained(teacher_world, teacher_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers")
    results = train_teachers(teacher_world, teacher_cfg, out)
    return out, results["id"], results["sequence"]
