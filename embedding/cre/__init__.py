"""Collaboration-aware recommendation enhancement, CRE (SAIL-Embedding §3.3.5), after content training.

    run_cre(ds, encoded, base_model_dir, teachers, cfg, out_dir, device)
      stage 1  seq2item  (cfg.seq2item_steps)  mean of <= 10 history item embeddings -> next item, InfoNCE
      stage 2  ID2item   (cfg.id2item_steps)   linear heads onto the teachers' item-ID vectors + seq2item
      -> CREResult(model_dir, metrics (before/... and after), steps_per_sec, heads_path)

The package, in the order a step uses it:

    config.py      CREConfig
    sequences.py   seq2item examples from TRAIN positives (vanilla / filtered histories)
    data.py        teacher tables, sequences and aux pairs as rows of the encoded items (CREData)
    samplers.py    Seq2ItemSampler, ID2ItemSampler: the rows of step s from a generator seeded by (seed, s)
    embedder.py    item rows -> embeddings with gradients (full model, or frozen fusion outputs + item memory)
    objectives.py  the seq2item and ID2item losses, the content anchor (CREObjectives)
    heads.py       the teacher projection heads, their file and `project`
    train.py       the loop: build_state, train_step, checkpoint, evaluate, run_cre
    evaluate.py    the before/after evaluators (seq2item recall, i2i, categories, teacher agreement, alignment)

Seq2item. Every earlier train positive with >= `min_history` distinct earlier items is a target; its query is
the normalised MEAN of the model's own embeddings of <= `history_len` of them. Two kinds of history, one kind per
batch (stochastic specialization, §3.3.3) with probabilities `sequence_mix` and a learnable temperature each:
vanilla (a random subset) and filtered (the earlier items most similar to the target under the CONTENT model,
computed once at the start). We filter by content similarity (SAIL: "by content tags or collaborative
clusters"), so the filter cannot leak the teachers' collaborative signal into the data selection.

What learns (our choice for CPU budgets; SAIL fine-tunes its whole model). CRE adds an item memory to the model
(embedding.model.InputMemory: a wide MLP over the pooled raw inputs, added to the output, zero at the start):
the small fusion transformer took up item-specific collaborative signal too slowly, the wide MLP learns it
quickly and still from content alone, so cold items get a vector too. With `finetune_fusion: false` (default)
the fusion transformer is frozen: its per-item outputs are computed once and each step costs one MLP pass. With
`finetune_fusion: true` the whole model trains; only `history_grad` random history items per sequence (and every
target) are then embedded with gradients, the others are read from a bank of item embeddings (no gradient)
refreshed every `bank_refresh_every` steps (a MoCo-style memory bank); `history_grad = history_len` is exact.

ID2item (feature distillation). For every teacher (e.g. {"id": two-tower, "sequence": SASRec}) a ProjectionHead
(linear by default: an MLP head learnt the teacher from small differences between student vectors and left the
embedding as it was) maps the student's item embedding onto that teacher's item-ID vectors, with
`DistillationLoss` = w_cos * (1 - cos) + w_nce * in-batch InfoNCE(projected, teacher): the cosine fixes each
item's position, the contrastive term keeps the teacher's neighbourhoods apart, which is what recommendation
uses. Only items in a teacher's vocabulary (train-period items) are its targets. Stage 2 is never distillation
alone: the seq2item loss keeps running (`id2item_seq2item_weight`; without it distillation undid stage 1), the
content anchor keeps content perception, and optionally the auxiliary i2i loss (`aux_i2i_weight`). One head per
teacher, so teachers of different widths are weighted explicitly (`teacher_weights`) and a missing one drops out.
The heads sit on the L2-normalised item embedding the item table carries, so distillation shapes exactly that
vector; they are saved beside the model, so `OmniEmbeddingModel.from_pretrained(out_dir / "model")` is unchanged.

Content anchor (our addition, both stages): 1 - cos(item's embedding, its content-model embedding), 0 until CRE
moves the item. An in-batch InfoNCE version also pushed items of one topic apart; the cosine only limits drift.

Every item is embedded in the item table's instruction (target role, task "i2i") in both stages: CRE trains the
very vectors that downstream stages (interests, match features) average and compare.
"""

from embedding.cre.config import CREConfig
from embedding.cre.heads import HEADS_NAME, ProjectionHead, load_heads, project, save_heads
from embedding.cre.train import CREResult, run_cre

__all__ = ["CREConfig", "CREResult", "run_cre", "HEADS_NAME", "ProjectionHead", "load_heads", "project",
           "save_heads"]
