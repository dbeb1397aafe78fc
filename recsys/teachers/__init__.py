"""TorchRec teachers: an ID-to-item two-tower model and a sequence-to-item SASRec model.

Both train on TRAIN-split positive interactions only, through DistributedModelParallel (one process, or
`torchrun --nproc_per_node N -m recsys.teachers ...`), and export L2-normalised item embeddings (and user
embeddings) with a model version and the id vocabulary; see recsys.teachers.export for the layout.
"""

from recsys.teachers.config import SASRecConfig, TeacherConfig, TwoTowerConfig
from recsys.teachers.data import UNKNOWN_INDEX, Vocab, load_vocabs
from recsys.teachers.evaluate import NextItemTask, evaluate_next_item, evaluate_popularity, next_item_task
from recsys.teachers.train import TeacherResult, train_id_teacher, train_sequence_teacher

__all__ = ["TeacherConfig", "TwoTowerConfig", "SASRecConfig", "TeacherResult", "train_id_teacher",
           "train_sequence_teacher", "evaluate_next_item", "evaluate_popularity", "next_item_task",
           "NextItemTask", "Vocab", "load_vocabs", "UNKNOWN_INDEX"]
