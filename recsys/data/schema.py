"""The canonical dataset format every stage reads.

A dataset is a directory::

    <dataset>/
      manifest.json        name, version, modalities, labels, positive rule, time range, split cut-offs,
                           row counts, content hash
      items.parquet        one row per item (ITEM_COLUMNS)
      interactions.parquet one row per (user, item, time) event with label columns (INTERACTION_COLUMNS)
      users.parquet        optional, user_id plus free attribute columns
      queries.parquet      optional, query_text -> item_id pairs (QUERY_COLUMNS)
      media/               optional, images and audio referenced by relative paths
      world/               optional, ground truth of a synthetic world (see recsys.world)

Ids are int64 (Feast join keys and TorchRec indices need integers; map string ids before import).
Timestamps are tz-aware UTC with microsecond precision (Spark reads only microsecond parquet).
Media paths are relative to the dataset directory, or absolute. The parquet adapter resolves a source's relative
paths against the source folder at prepare time and stores them absolute, so they keep pointing at the user's files.

Feedback: "explicit" when the interactions are impressions (both classes by the positive rule), "implicit" when
every interaction is positive (purchases, clicks without impressions): ranking then samples its negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recsys.errors import DataError

FORMAT_VERSION = "2"

Feedback = Literal["explicit", "implicit"]
FEEDBACK_TEXT: dict[str, str] = {
    "explicit": "explicit: interactions are impressions (both classes by the positive rule)",
    "implicit": "implicit: every interaction is positive; ranking samples negatives (ranking.negatives)",
}

ITEM_TEXT_FIELDS: tuple[str, ...] = ("title", "description", "ocr", "asr", "author")
"""Free-text string fields of an item; any may be missing (null) or absent as a column."""

ITEM_LIST_FIELDS: tuple[str, ...] = ("tags", "categories", "image_paths")
"""List<string> fields: user/creator tags, label texts (e.g. genres), image paths (cover first, then frames)."""

REQUIRED_ITEM_COLUMNS: tuple[str, ...] = ("item_id", "created_at")
REQUIRED_INTERACTION_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp")
REQUIRED_QUERY_COLUMNS: tuple[str, ...] = ("query_text", "item_id")

PRECOMPUTED_VECTOR_PREFIX = "vec_"
"""Items may carry precomputed per-modality vectors as list<float> columns named vec_<modality>."""

MODALITIES: tuple[str, ...] = ("text", "image", "audio")


@dataclass(frozen=True)
class PositiveRule:
    """Which interactions count as positive engagement: `column >= min_value`."""

    column: str
    min_value: float

    def describe(self) -> str:
        return f"{self.column} >= {self.min_value:g}"


@dataclass
class Manifest:
    """What a dataset holds; written last, so a directory with a manifest is complete.

    skipped: counted skips (rows or files left out, per cause); content: items per modality (items_with_text,
    items_with_image, items_with_audio, items_with_vec_<name>) and items_created_after_first_interaction;
    source_inputs: what the dataset was prepared from (data config, world config, input files), hashed into
    source_fingerprint (empty for datasets not written by recsys.data.prepare).
    """

    name: str
    modalities: list[str]
    labels: dict[str, str]
    positive: PositiveRule
    feedback: Feedback
    time_range: tuple[str, str]
    split: dict[str, str]
    row_counts: dict[str, int]
    content_hash: str
    source: str
    skipped: dict[str, int] = field(default_factory=dict)
    content: dict[str, int] = field(default_factory=dict)
    source_fingerprint: str = ""
    source_inputs: dict = field(default_factory=dict)
    version: str = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "modalities": list(self.modalities),
            "labels": dict(self.labels),
            "positive": {"column": self.positive.column, "min_value": self.positive.min_value},
            "feedback": self.feedback,
            "time_range": list(self.time_range),
            "split": dict(self.split),
            "row_counts": dict(self.row_counts),
            "skipped": dict(self.skipped),
            "content": dict(self.content),
            "content_hash": self.content_hash,
            "source_fingerprint": self.source_fingerprint,
            "source_inputs": self.source_inputs,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict, file: str = "manifest.json") -> Manifest:
        """Read a manifest; one of another format version is refused (re-prepare it), never half-interpreted."""
        if d.get("version") != FORMAT_VERSION:
            raise DataError(f"dataset format version {d.get('version')!r}, this code reads {FORMAT_VERSION!r}: "
                            "re-prepare it (`recsys data prepare --force`)", file=file)
        try:
            return cls(
                name=d["name"],
                version=d["version"],
                source=d["source"],
                modalities=list(d["modalities"]),
                labels=dict(d["labels"]),
                positive=PositiveRule(**d["positive"]),
                feedback=d["feedback"],
                time_range=tuple(d["time_range"]),
                split=dict(d["split"]),
                row_counts={k: int(v) for k, v in d["row_counts"].items()},
                skipped={k: int(v) for k, v in d["skipped"].items()},
                content={k: int(v) for k, v in d["content"].items()},
                content_hash=d["content_hash"],
                source_fingerprint=d["source_fingerprint"],
                source_inputs=d["source_inputs"],
                extra=d["extra"],
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise DataError(f"malformed manifest ({type(e).__name__}: {e}); re-prepare the dataset",
                            file=file) from None
