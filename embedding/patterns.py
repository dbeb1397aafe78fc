"""Dataset-driven pattern matching (SAIL §3.3.4): a pair of items is scored not only whole (omni -> omni) but
under every modality pattern its dataset declares, e.g. image -> text (a poster against the other item's title
and tags) or text[title] -> text[tags], all in the same forward pass.

A *view* keeps part of an item's inputs and removes the rest exactly as a missing input looks (masks off, text
fields at -1, NaN vectors):

    omni            everything the item has
    text            every text field          text[title,tags]   only those fields (embedding.encoders.TEXT_FIELDS)
    image / audio   that modality only        vec                 the precomputed vectors only

A pattern "query view -> target view" is valid for a pair when both items have something in their views; pairs
without it contribute no loss to that pattern, and a pattern with fewer than two valid pairs in a batch
contributes none at all. Text-side queries or targets (q2i queries, label texts) only take the view "text".
A pattern may carry a weight, "image->text*0.5" (default 1): a batch's loss is the weighted mean over its
patterns. mICL (modality-isolated contrastive learning, SAIL §2) is the patterns text->text, image->image and
audio->audio at weight alpha (`micl_patterns`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from embedding.batches import Batch
from embedding.encoders.types import TEXT_FIELDS
from embedding.losses import MatryoshkaLoss
from embedding.model import OmniEmbeddingModel

OMNI = "omni"
MODALITY_VIEWS = ("omni", "text", "image", "audio", "vec")


@dataclass(frozen=True)
class View:
    modality: str
    fields: tuple[str, ...] = ()  # text fields kept (empty: all), for modality "text"

    @classmethod
    def parse(cls, spec: str) -> View:
        spec = spec.strip()
        name, _, rest = spec.partition("[")
        if name not in MODALITY_VIEWS:
            raise ValueError(f"unknown view {spec!r}: expected one of {MODALITY_VIEWS}, or text[<field>,...]")
        fields = tuple(f.strip() for f in rest.rstrip("]").split(",") if f.strip()) if rest else ()
        if fields and name != "text":
            raise ValueError(f"view {spec!r}: only text views name fields")
        if unknown := sorted(set(fields) - set(TEXT_FIELDS)):
            raise ValueError(f"view {spec!r}: unknown text fields {unknown}; known: {list(TEXT_FIELDS)}")
        return cls(name, fields)

    def __str__(self) -> str:
        return f"{self.modality}[{','.join(self.fields)}]" if self.fields else self.modality

    def apply(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """(the batch with everything outside the view removed, has [B]: the item has something in the view)."""
        field = batch["text_field"]
        if self.modality == OMNI:
            return batch, torch.ones(len(field), dtype=torch.bool, device=field.device)
        out = dict(batch)
        keep_text = self.modality == "text"
        if keep_text and self.fields:
            allowed = torch.tensor([TEXT_FIELDS.index(f) for f in self.fields], device=field.device)
            out["text_field"] = torch.where(torch.isin(field, allowed), field, torch.full_like(field, -1))
        elif not keep_text:
            out["text_field"] = torch.full_like(field, -1)
        for key, modality in (("image_mask", "image"), ("audio_mask", "audio")):
            if key in out and self.modality != modality:
                out[key] = torch.zeros_like(out[key])
        for key in [k for k in out if k.startswith("pre_")]:
            if self.modality != "vec":
                out[key] = torch.full_like(out[key], float("nan"))
        return out, _has(out, self.modality)


def _has(batch: dict[str, Tensor], modality: str) -> Tensor:
    """[B] the item has some input of `modality` in `batch`."""
    field = batch["text_field"]
    none = torch.zeros(len(field), dtype=torch.bool, device=field.device)
    if modality == "text":
        return (field >= 0).any(1)
    if modality == "vec":
        pre = [~torch.isnan(batch[k]).any(1) for k in sorted(batch) if k.startswith("pre_")]
        return torch.stack(pre).any(0) if pre else none
    key = f"{modality}_mask"
    return batch[key].any(1) if key in batch else none


@dataclass(frozen=True)
class Pattern:
    query: View
    target: View
    weight: float = 1.0

    @classmethod
    def parse(cls, spec: str) -> Pattern:
        body, star, weight = spec.partition("*")
        q, sep, t = body.partition("->")
        if not sep:
            raise ValueError(f"pattern {spec!r} is not '<query view> -> <target view>[*weight]'")
        try:
            w = float(weight) if star else 1.0
        except ValueError:
            raise ValueError(f"pattern {spec!r}: the weight after '*' is not a number") from None
        if not w > 0:
            raise ValueError(f"pattern {spec!r}: the weight must be > 0")
        return cls(View.parse(q), View.parse(t), w)

    def __str__(self) -> str:
        """The pattern without its weight: what names its temperature."""
        return f"{self.query}->{self.target}"

    @property
    def is_omni(self) -> bool:
        return self.query.modality == OMNI and self.target.modality == OMNI


def micl_patterns(weight: float) -> list[str]:
    """mICL at weight alpha: each modality against itself (pairs missing it contribute nothing)."""
    return [f"{m}->{m}*{weight:g}" for m in ("text", "image", "audio")]


def parse_patterns(specs: list[str], query_kind: str, target_kind: str) -> list[Pattern]:
    """The dataset's patterns; a text side takes the text view only (written "text" or "omni")."""
    out = []
    for spec in specs or ["omni->omni"]:
        p = Pattern.parse(spec)
        for side, kind in ((p.query, query_kind), (p.target, target_kind)):
            if kind == "text" and (side.modality not in ("text", OMNI) or side.fields):
                raise ValueError(f"pattern {spec!r}: this dataset's {kind} side is a text, it takes no view")
        out.append(p)
    if len(set(map(str, out))) != len(out):
        raise ValueError(f"patterns {specs} repeat one (a weight does not make it another)")
    return out


def stack_views(batch: dict[str, Tensor], views: list[View]) -> tuple[dict[str, Tensor], Tensor]:
    """Every view of the batch stacked along the batch axis (one forward pass for all): (batch [V*B, ...],
    has [V, B])."""
    applied = [v.apply(batch) for v in views]
    if len(applied) == 1:  # one view (omni->omni alone, the default): no copy
        return applied[0][0], applied[0][1][None]
    return ({k: torch.cat([b[k] for b, _ in applied]) for k in batch}, torch.stack([h for _, h in applied]))


# ---- the losses of a batch under its patterns ----------------------------------------------------------------
@dataclass
class PatternSides:
    """A batch's embeddings under its dataset's patterns: every query view and target view of the B pairs."""

    patterns: list[Pattern]
    query_views: list[View]
    target_views: list[View]
    query: torch.Tensor  # (Vq, B, D)
    target: torch.Tensor  # (Vt, B, D)
    query_has: torch.Tensor  # (Vq, B) bool: the query item has something in the view
    target_has: torch.Tensor  # (Vt, B)
    negatives: torch.Tensor | None = None  # (M, D) hard negatives (whole items): the omni->omni pattern only

    def flat(self) -> PatternSides:
        """The same shapes with every embedding equal: the chance level of the loss."""
        ones = lambda x: None if x is None else torch.ones_like(x, dtype=torch.float32)  # noqa: E731
        return PatternSides(self.patterns, self.query_views, self.target_views, ones(self.query),
                            ones(self.target), self.query_has, self.target_has, ones(self.negatives))


def pattern_key(dataset: str, pattern: Pattern) -> str:
    """The temperature key of a dataset's pattern (the dataset's own for omni->omni)."""
    return dataset if pattern.is_omni else f"{dataset}:{pattern}"


def pattern_loss(loss_fn: MatryoshkaLoss, b: Batch, sides: PatternSides, positives: torch.Tensor | None
                 ) -> torch.Tensor:
    """Weighted mean over the patterns with at least two valid pairs of the loss on those pairs (hard negatives
    join the omni->omni pattern); zero (with a graph) when no pattern has."""
    total, used, n = sides.query.new_zeros(()), 0, len(b.labels)
    for p in sides.patterns:
        qi, ti = sides.query_views.index(p.query), sides.target_views.index(p.target)
        valid = sides.query_has[qi] & sides.target_has[ti]
        every = bool(valid.all())  # the usual case (whole items): no copies
        rows = torch.nonzero(valid).squeeze(1)
        if len(rows) < 2:
            continue
        emb = [sides.query[qi], sides.target[ti]] if every else [sides.query[qi][rows], sides.target[ti][rows]]
        cols, kw = rows, {}
        with_negatives = p.is_omni and sides.negatives is not None
        if with_negatives:
            emb.append(sides.negatives)
            cols = torch.cat([rows, n + torch.arange(len(sides.negatives), device=rows.device)])
            kw["negative_ids"] = b.negative_ids
        if positives is None:
            mask = None
        elif every:  # every row, and the negatives' columns only where this pattern scores them
            mask = positives if with_negatives else positives[:, :n]
        else:
            mask = positives[rows][:, cols]
        labels = b.labels if every else b.labels[rows]
        total = total + p.weight * loss_fn.compute_loss_from_embeddings(emb, labels, key=pattern_key(b.name, p),
                                                                        positives=mask, **kw)
        used += p.weight
    return total / used if used else sides.query.sum() * 0.0


def graded_loss(graded_fn: MatryoshkaLoss, b: Batch, sides: PatternSides) -> torch.Tensor:
    """A graded dataset's batch: CoSENT (wrapped in the same Matryoshka prefixes) on whole items."""
    return graded_fn.compute_loss_from_embeddings([sides.query[0], sides.target[0]], b.scores)


def embed_patterns(model: OmniEmbeddingModel, b: Batch, patterns: list[Pattern]) -> PatternSides:
    """Every view of the batch's queries in one forward pass, every target view in another (their roles differ),
    and the hard negatives in a third."""
    q_views = list(dict.fromkeys(p.query for p in patterns))
    t_views = list(dict.fromkeys(p.target for p in patterns))
    n = len(b.labels)
    q_batch, q_has = stack_views(b.query, q_views)
    t_batch, t_has = stack_views(b.target, t_views)
    q = model(q_batch, role="query", task=b.task).embedding.view(len(q_views), n, -1)
    t = model(t_batch, role="target", task=b.task).embedding.view(len(t_views), n, -1)
    neg = model(b.negatives, role="target", task=b.task).embedding if b.negatives is not None else None
    return PatternSides(patterns, q_views, t_views, q, t, q_has, t_has, neg)


__all__ = ["OMNI", "Pattern", "PatternSides", "View", "embed_patterns", "graded_loss", "micl_patterns",
           "parse_patterns", "pattern_key", "pattern_loss", "stack_views"]
