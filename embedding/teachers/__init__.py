"""TorchRec teachers: an ID-to-item two-tower model and a sequence-to-item SASRec model, consumed by CRE.

Both train on TRAIN-split positive interactions only, through DistributedModelParallel (one process, or several
started by embedding.teachers.launch: `recsys teachers --nproc 2 --dataset DIR --out DIR`, rendezvous on loopback;
torchrun also works, but its store listens on every interface), and export L2-normalised item embeddings (and user
embeddings) with a model version and the id vocabulary; see embedding.teachers.export for the layout.
"""

from embedding.teachers.config import SASRecConfig, TeacherConfig, TwoTowerConfig
from embedding.teachers.data import UNKNOWN_INDEX, Vocab, load_vocabs
from embedding.teachers.evaluate import NextItemTask, evaluate_next_item, evaluate_popularity, next_item_task
from embedding.teachers.train import (
                                      REPORT_NAME,
                                      TEACHER_KINDS,
                                      TeacherResult,
                                      train_id_teacher,
                                      train_sequence_teacher,
                                      train_teachers,
)

__all__ = ["TeacherConfig", "TwoTowerConfig", "SASRecConfig", "TeacherResult", "train_id_teacher",
           "train_sequence_teacher", "train_teachers", "TEACHER_KINDS", "REPORT_NAME", "evaluate_next_item",
           "evaluate_popularity", "next_item_task", "NextItemTask", "Vocab", "UNKNOWN_INDEX", "load_vocabs"]
