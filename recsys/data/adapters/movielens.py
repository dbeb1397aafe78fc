"""MovieLens -> canonical dataset.

Supports the ml-latest-small layout (movies.csv, ratings.csv, tags.csv) and the ml-100k layout (u.data, u.item),
with an optional posters folder of <movieId>.jpg files.

Choices (MovieLens has no impression log and no item creation time):
- every rating is an impression; the positive is rating >= 4 (the manifest's PositiveRule);
- created_at is the item's first appearance (its first rating or tag), or 1 January of the year in its title
  when it was never rated;
- free-text tags become item text only if they were written before the train cut-off, so no test-period user
  activity leaks into item content;
- posters are referenced in place (absolute paths), not copied; items without a poster are reported;
- an empty rating is a missing label: the row is dropped and counted (missing_label_rows), never a negative.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from recsys.data.dataset import Dataset, build_dataset
from recsys.data.schema import PositiveRule
from recsys.data.split import TemporalSplit
from recsys.data.validate import drop_missing_labels, to_int_ids
from recsys.errors import DataError

log = logging.getLogger(__name__)

_YEAR = re.compile(r"\((\d{4})\)\s*$")
_ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                  "War", "Western"]


SOURCE_FILES = ("movies.csv", "ratings.csv", "tags.csv", "u.data", "u.item")


def source_files(root: Path) -> list[Path]:
    """The files of a MovieLens folder this adapter reads (for the source fingerprint)."""
    return [Path(root) / n for n in SOURCE_FILES if (Path(root) / n).is_file()]


def _read_csv(path: Path, columns: list[str], **kw) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, **kw)
    except FileNotFoundError:
        raise DataError("file not found", file=str(path)) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty (no header, no rows)", file=str(path)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"cannot parse: {e}", file=str(path)) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; found {list(df.columns)}", file=str(path))
    if df.empty:
        raise DataError("table is empty", file=str(path))
    for col in ("userId", "movieId"):
        if col in columns and not pd.api.types.is_integer_dtype(df[col]):
            bad = df.loc[pd.to_numeric(df[col], errors="coerce").isna(), [col]]
            raise DataError(f"{len(bad)} non-integer id(s)", file=str(path), column=col, examples=bad)
    return df


def _unix_seconds(series: pd.Series, file: Path) -> pd.Series:
    seconds = pd.to_numeric(series, errors="coerce")
    parsed = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
    if parsed.isna().any():
        raise DataError(f"{int(parsed.isna().sum())} missing or non-numeric Unix timestamp(s)", file=str(file),
                        column="timestamp", examples=series[parsed.isna()].to_frame())
    return parsed


def _read_latest_small(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    movies = _read_csv(root / "movies.csv", ["movieId", "title", "genres"])
    ratings = _read_csv(root / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
    tags = None
    if (root / "tags.csv").is_file():
        tags = _read_csv(root / "tags.csv", ["userId", "movieId", "tag", "timestamp"])
    movies["genres"] = movies["genres"].fillna("").map(
        lambda g: [x for x in str(g).split("|") if x and x != "(no genres listed)"])
    return movies, ratings, tags


def _read_100k(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, None]:
    ratings = _read_csv(root / "u.data", ["userId", "movieId", "rating", "timestamp"], sep="\t",
                        names=["userId", "movieId", "rating", "timestamp"])
    cols = ["movieId", "title", "release", "video", "url"] + _ML100K_GENRES
    raw = _read_csv(root / "u.item", cols, sep="|", names=cols, encoding="latin-1")
    raw["genres"] = raw[_ML100K_GENRES].apply(lambda r: [g for g in _ML100K_GENRES[1:] if r[g] == 1], axis=1)
    return raw[["movieId", "title", "genres"]], ratings, None


def read_movielens(root: str | Path, posters: str | Path | None = None,
                   split_fractions: tuple[float, float] = (0.1, 0.1), unknown_items: str = "error",
                   name: str = "movielens", feedback: str = "auto") -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError("MovieLens folder not found (or not a folder)", file=str(root))
    if (root / "ratings.csv").is_file():
        movies, ratings, tags = _read_latest_small(root)
        movies_file, ratings_file = root / "movies.csv", root / "ratings.csv"
    elif (root / "u.data").is_file():
        movies, ratings, tags = _read_100k(root)
        movies_file, ratings_file = root / "u.item", root / "u.data"
    else:
        raise DataError("not a MovieLens folder: expected ratings.csv (ml-latest-small) or u.data (ml-100k)",
                        file=str(root))
    ratings = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    for col in ("user_id", "item_id"):
        ratings[col] = to_int_ids(ratings[col], str(ratings_file), col)
    movies["movieId"] = to_int_ids(movies["movieId"], str(movies_file), "movieId")
    ratings["timestamp"] = _unix_seconds(ratings["timestamp"], ratings_file)
    ratings, missing = drop_missing_labels(ratings, ["rating"], str(ratings_file))
    if ratings.empty:
        raise DataError("no rating left: every rating is empty", file=str(ratings_file), column="rating")
    split = TemporalSplit.from_fractions(ratings["timestamp"], *split_fractions)

    items = movies.rename(columns={"movieId": "item_id", "genres": "categories"})
    first_seen = ratings.groupby("item_id")["timestamp"].min()
    if tags is not None:
        tags = tags.rename(columns={"movieId": "item_id"})
        tags["item_id"] = to_int_ids(tags["item_id"], str(root / "tags.csv"), "movieId")
        tags["timestamp"] = _unix_seconds(tags["timestamp"], root / "tags.csv")
        first_seen = pd.concat([first_seen, tags.groupby("item_id")["timestamp"].min()]).groupby(level=0).min()
        usable = tags.loc[(tags["timestamp"] < split.train_end) & tags["tag"].notna()]
        item_tags = (usable.assign(tag=usable["tag"].astype(str).str.strip().str.lower())
                     .drop_duplicates(["item_id", "tag"]).groupby("item_id")["tag"].apply(list))
        items["tags"] = items["item_id"].map(item_tags).map(lambda v: v if isinstance(v, list) else [])
    year = items["title"].astype(str).str.extract(_YEAR)[0]
    fallback = pd.to_datetime(year.fillna(str(ratings["timestamp"].min().year)) + "-01-01", utc=True)
    items["created_at"] = items["item_id"].map(first_seen).fillna(fallback)

    n_posters = 0
    if posters is not None:
        posters = Path(posters).resolve()
        if not posters.is_dir():
            raise DataError("posters folder not found", file=str(posters))
        present = {p.stem for p in posters.glob("*.jpg")}
        items["image_paths"] = items["item_id"].map(
            lambda i: [str(posters / f"{i}.jpg")] if str(i) in present else [])
        n_posters = int((items["image_paths"].map(len) > 0).sum())
        log.info("posters: %d items with a poster, %d missing", n_posters, len(items) - n_posters)
    return build_dataset(
        name=name, source=f"movielens:{root.name}", items=items,
        interactions=ratings[["user_id", "item_id", "timestamp", "rating"]],
        labels={"rating": "explicit rating 0.5-5 (every rating is an impression)"},
        positive=PositiveRule("rating", 4.0), split=split, unknown_items=unknown_items, feedback=feedback,
        skipped=missing,
        extra={"items_missing_image": len(items) - n_posters if posters else None,
               "tags_cutoff": split.train_end.isoformat()},
        files={"items": str(movies_file), "interactions": str(ratings_file)},
    )
