"""Guards against degenerate outputs of the embedding stages: a result that looks normal but means nothing.

What each guard does and why:
- item embeddings all zero or constant -> DataError (stop): every match feature, interest and semantic ID
  downstream would be computed from vectors that cannot tell items apart.
- semantic IDs: one level-0 code for (nearly) all items -> WARNING with the counts (the run is still meaningful
  through the embeddings, not through the SID features); one full SID tuple for every item -> DataError.
- a contrastive loss that never leaves chance -> WARNING naming the knobs (the model may still be usable: the
  residual paths keep the encoders' neighbourhoods, but training added nothing).
"""

from __future__ import annotations

import logging

import numpy as np

from embedding.encoders.types import EncodedItems
from recsys.errors import DataError

log = logging.getLogger(__name__)

ZERO_NORM = 1e-6  # an embedding row with a smaller norm carries no direction
CONSTANT_SPREAD = 1e-4  # largest distance of any (unit) row from the mean row below this: one vector for all
SID_NEARLY_ALL = 0.95  # share of items on one level-0 code that makes the semantic IDs uninformative
CHANCE_FRACTION = 0.97  # final loss at or above this fraction of the uniform-score loss: still at chance

_CAUSES = ("check that the items carry content the encoders read (encoders.text.enabled and non-empty text "
           "fields, readable image_paths / audio_path, vec_<name> columns) and that training ran "
           "(embedding.train.stages[].steps, embedding.train.lr)")


def content_presence(encoded: EncodedItems) -> dict[str, int]:
    """Items that have each input modality: what a degenerate result can be traced to."""
    out = {"items": len(encoded), "text": int((encoded.text.field >= 0).any(1).sum())}
    if encoded.image_mask is not None:
        out["image"] = int(encoded.image_mask.any(1).sum())
    if encoded.audio_mask is not None:
        out["audio"] = int(encoded.audio_mask.any(1).sum())
    for name, v in sorted(encoded.precomputed.items()):
        out[f"vec_{name}"] = int((~np.isnan(v).any(1)).sum())
    return out


def check_embeddings(item_ids: np.ndarray, emb: np.ndarray, source: str) -> dict[str, int]:
    """DataError when the embeddings are all zero or one vector (or its negation) for every item; a WARNING
    counting the zero rows otherwise. Returns {"zero_embeddings": n}."""
    emb = np.asarray(emb, dtype=np.float64)
    norms = np.linalg.norm(emb, axis=1)
    zero = norms < ZERO_NORM
    n = len(emb)
    if n and zero.all():
        raise DataError(f"{source}: every one of the {n} item embeddings is zero; {_CAUSES}")
    if zero.any():
        log.warning("%s: %d of %d items have a zero embedding (no content the model reads), e.g. item_id %s",
                    source, int(zero.sum()), n, ", ".join(str(int(i)) for i in np.asarray(item_ids)[zero][:5]))
    rows = emb[~zero] / norms[~zero, None]
    if len(rows) >= 2:
        spread = float(np.linalg.norm(rows - rows.mean(0), axis=1).max())
        ev = np.linalg.eigvalsh(rows.T @ rows)  # squared singular values, ascending ([D, D]: cheap for any N)
        rank_one = ev.size < 2 or ev[-2] <= 1e-10 * ev[-1]
        if spread < CONSTANT_SPREAD or rank_one:
            what = (f"the same vector (largest distance from their mean {spread:.1e})" if spread < CONSTANT_SPREAD
                    else "one direction up to sign (rank 1)")
            raise DataError(f"{source}: the {len(rows)} non-zero item embeddings are {what}: the model cannot "
                            f"tell items apart; {_CAUSES}")
    return {"zero_embeddings": int(zero.sum())}


def check_semantic_ids(sids: np.ndarray, source: str) -> dict[str, float]:
    """DataError when every item has the same SID tuple; a WARNING with the counts when one level-0 code holds
    (nearly) all items. Returns the level-0 counts for the summary."""
    sids = np.asarray(sids)
    n = len(sids)
    if n < 2:
        return {}
    tuples = np.unique(sids, axis=0)
    codes, counts = np.unique(sids[:, 0], return_counts=True)
    top = int(counts.max())
    out = {"sid_level0_codes": float(len(codes)), "sid_level0_top_share": top / n}
    hint = ("raise embedding.semantic_ids.codebook_size or check the embeddings themselves "
            "(train.stages[].steps, the items' content)")
    if len(tuples) == 1:
        raise DataError(f"{source}: all {n} items have the same semantic ID {tuple(int(x) for x in tuples[0])}: "
                        f"the SID features would be constant; {hint}")
    if top >= SID_NEARLY_ALL * n:
        log.warning("%s: %d of %d items (%.1f%%) share level-0 semantic ID %d (%d codes used): SID match features "
                    "will hardly vary; %s", source, top, n, 100 * top / n, int(codes[counts.argmax()]), len(codes),
                    hint)
    return out


def warn_if_at_chance(history: list[dict], presence: dict[str, int], tail: int = 50) -> dict[str, float]:
    """A WARNING for each dataset whose mean loss over its last `tail` steps is within a few % of the loss at
    uniform scores (history rows: dataset, loss, chance). Returns dataset -> final loss / chance loss."""
    ratios: dict[str, float] = {}
    for name in sorted({h["dataset"] for h in history}):
        rows = [h for h in history if h["dataset"] == name and "chance" in h][-tail:]
        if not rows:
            continue
        loss, chance = float(np.mean([h["loss"] for h in rows])), float(np.mean([h["chance"] for h in rows]))
        if chance <= 0:
            continue
        ratios[name] = loss / chance
        if loss >= CHANCE_FRACTION * chance:
            log.warning("embedding training: the %s loss never left chance (mean of the last %d steps %.3f vs %.3f "
                        "at uniform scores): training added nothing for this dataset. Raise "
                        "embedding.train.stages[].steps or embedding.train.lr, or give the items content "
                        "(items with each modality: %s)", name, len(rows), loss, chance, presence)
    return ratios


__all__ = ["check_embeddings", "check_semantic_ids", "content_presence", "warn_if_at_chance"]
