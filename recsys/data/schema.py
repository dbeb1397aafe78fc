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
Media paths are relative to the dataset directory, or absolute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMAT_VERSION = "1"

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
    """What a dataset holds; written last, so a directory with a manifest is complete."""

    name: str
    modalities: list[str]
    labels: dict[str, str]
    positive: PositiveRule
    time_range: tuple[str, str]
    split: dict[str, str]
    row_counts: dict[str, int]
    content_hash: str
    source: str
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
            "time_range": list(self.time_range),
            "split": dict(self.split),
            "row_counts": dict(self.row_counts),
            "content_hash": self.content_hash,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        return cls(
            name=d["name"],
            version=d.get("version", FORMAT_VERSION),
            source=d.get("source", "unknown"),
            modalities=list(d["modalities"]),
            labels=dict(d["labels"]),
            positive=PositiveRule(**d["positive"]),
            time_range=tuple(d["time_range"]),
            split=dict(d["split"]),
            row_counts={k: int(v) for k, v in d["row_counts"].items()},
            content_hash=d["content_hash"],
            extra=d.get("extra", {}),
        )
