"""Validation and normalisation of the canonical tables (recsys.data.schema).

Each check raises DataError naming the file, the column and example rows; nothing is written on failure.
Rows that are dropped rather than refused (a missing label, an unknown item with unknown_items=skip) are counted
in the returned skip report and logged as a WARNING: a missing label is never read as a negative.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from recsys.data.schema import (
    ITEM_LIST_FIELDS,
    ITEM_TEXT_FIELDS,
    PRECOMPUTED_VECTOR_PREFIX,
    REQUIRED_INTERACTION_COLUMNS,
    REQUIRED_ITEM_COLUMNS,
    REQUIRED_QUERY_COLUMNS,
)
from recsys.errors import DataError

log = logging.getLogger(__name__)


def _require_columns(df: pd.DataFrame, required: tuple[str, ...], file: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"missing required column(s) {missing}; found {list(df.columns)}", file=file)


def _require_nonempty(df: pd.DataFrame, file: str) -> None:
    if len(df) == 0:
        raise DataError("table is empty", file=file)


def to_int_ids(series: pd.Series, file: str, column: str) -> pd.Series:
    """Ids must be integers (Feast join keys, TorchRec indices)."""
    if series.isna().any():
        raise DataError("null ids", file=file, column=column, examples=series[series.isna()].to_frame())
    if pd.api.types.is_integer_dtype(series):
        return series.astype("int64")
    numeric = pd.to_numeric(series, errors="coerce")
    bad = numeric.isna() | (numeric != np.floor(numeric))
    if bad.any():
        raise DataError("ids must be integers (map string ids to integers before import)",
                        file=file, column=column, examples=series[bad].to_frame())
    return numeric.astype("int64")


def to_utc(series: pd.Series, file: str, column: str) -> pd.Series:
    """Parse timestamps (datetime, ISO strings or Unix seconds) to tz-aware UTC, microsecond precision."""
    if pd.api.types.is_numeric_dtype(series):
        parsed = pd.to_datetime(series, unit="s", utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
    bad = parsed.isna() & series.notna()
    if bad.any() or series.isna().any():
        rows = series[bad | series.isna()].to_frame()
        raise DataError(f"{int(bad.sum() + series.isna().sum())} unparsable or missing timestamp(s)",
                        file=file, column=column, examples=rows)
    return parsed.astype("datetime64[us, UTC]")


def _as_str_list(value) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value if v is not None and str(v) != ""]


def _vector(value) -> list[float] | None:
    """A list<float> cell, or None when missing; raises TypeError/ValueError on anything else."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1:
        raise TypeError("not a list of numbers")
    return [float(v) for v in value]


def _vectors(items: pd.DataFrame, col: str, file: str) -> pd.Series:
    """Precomputed vectors: numeric lists of one length, None = missing; NaN inside a vector is refused."""
    values, bad = [], []
    for row, v in enumerate(items[col]):
        try:
            vec = _vector(v)
        except (TypeError, ValueError):
            bad.append(row)
            vec = None
        if vec is not None and not np.isfinite(vec).all():
            bad.append(row)
        values.append(vec)
    if bad:
        raise DataError(f"{len(bad)} precomputed vector(s) are not lists of finite numbers", file=file, column=col,
                        examples=items.iloc[bad][["item_id", col]])
    lengths = pd.Series([len(v) for v in values if v is not None], dtype="int64")
    if lengths.nunique() > 1 or (lengths == 0).any():
        rows = [i for i, v in enumerate(values) if v is not None and len(v) != lengths.mode().iloc[0]]
        raise DataError(f"precomputed vectors have mixed or zero lengths {sorted(lengths.unique())[:5]}",
                        file=file, column=col, examples=items.iloc[rows][["item_id"]])
    return pd.Series(values, index=items.index, dtype=object)


def drop_missing_labels(df: pd.DataFrame, columns: list[str], file: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Parse label columns to float32 and drop (and count) rows where any is missing (NaN, null, empty string).

    Returns the kept rows and counts: missing_label_rows (rows dropped) and missing_label_rows.<column> (rows where
    that column is missing; a row missing two labels counts in both).
    """
    df = df.copy()
    missing = pd.Series(False, index=df.index)
    counts: dict[str, int] = {}
    for col in columns:
        raw = df[col]
        if not (pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw)):
            raw = raw.astype(object).map(lambda v: None if isinstance(v, str) and not v.strip() else v)
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna()
        if bad.any():
            raise DataError("label values must be numeric", file=file, column=col, examples=df.loc[bad])
        df[col] = values.astype("float32")
        gone = values.isna()
        if gone.any():
            counts[f"missing_label_rows.{col}"] = int(gone.sum())
        missing |= gone
    counts = {"missing_label_rows": int(missing.sum()), **counts}
    if missing.any():
        log.warning("%s: dropped %d interaction(s) with a missing label (%s)", file, counts["missing_label_rows"],
                    ", ".join(f"{k.split('.', 1)[1]}: {v}" for k, v in counts.items() if "." in k))
    return df.loc[~missing], counts


def validate_items(items: pd.DataFrame, file: str = "items") -> pd.DataFrame:
    _require_columns(items, REQUIRED_ITEM_COLUMNS, file)
    _require_nonempty(items, file)
    items = items.copy()
    items["item_id"] = to_int_ids(items["item_id"], file, "item_id")
    dup = items["item_id"].duplicated(keep=False)
    if dup.any():
        raise DataError(f"{int(items['item_id'].duplicated().sum())} duplicate item id(s)", file=file,
                        column="item_id", examples=items.loc[dup, ["item_id"]])
    items["created_at"] = to_utc(items["created_at"], file, "created_at")
    for col in ITEM_TEXT_FIELDS:
        if col not in items.columns:
            items[col] = None
        elif items[col].notna().any() and not items[col].dropna().map(lambda v: isinstance(v, str)).all():
            bad = items[col].notna() & ~items[col].map(lambda v: isinstance(v, str))
            raise DataError("text fields must be strings", file=file, column=col,
                            examples=items.loc[bad, ["item_id", col]])
        items[col] = items[col].astype(object).where(items[col].notna(), None)
    for col in ITEM_LIST_FIELDS:
        items[col] = items[col].map(_as_str_list) if col in items.columns else [[] for _ in range(len(items))]
    if "audio_path" not in items.columns:
        items["audio_path"] = None
    items["audio_path"] = items["audio_path"].astype(object).where(items["audio_path"].notna(), None)
    for col in [c for c in items.columns if c.startswith(PRECOMPUTED_VECTOR_PREFIX)]:
        items[col] = _vectors(items, col, file)
    return items.sort_values("item_id").reset_index(drop=True)


def validate_interactions(interactions: pd.DataFrame, item_ids: pd.Series, label_columns: list[str],
                          file: str = "interactions", unknown_items: str = "error") -> tuple[pd.DataFrame, dict]:
    """Check interactions; returns the clean table and a report of counted skips.

    unknown_items: "error" raises on interactions whose item is not in the items table; "skip" drops and counts them.
    """
    _require_columns(interactions, REQUIRED_INTERACTION_COLUMNS, file)
    _require_nonempty(interactions, file)
    df = interactions.copy()
    df["user_id"] = to_int_ids(df["user_id"], file, "user_id")
    df["item_id"] = to_int_ids(df["item_id"], file, "item_id")
    df["timestamp"] = to_utc(df["timestamp"], file, "timestamp")
    absent = [c for c in label_columns if c not in df.columns]
    if absent:
        raise DataError(f"label column(s) {absent} declared but missing; found {list(df.columns)}", file=file)
    df, report = drop_missing_labels(df, label_columns, file)
    report["unknown_item_rows"] = 0
    unknown = ~df["item_id"].isin(item_ids)
    if unknown.any():
        if unknown_items == "error":
            raise DataError(f"{int(unknown.sum())} interaction(s) point at unknown items", file=file,
                            column="item_id", examples=df.loc[unknown, ["user_id", "item_id", "timestamp"]])
        report["unknown_item_rows"] = int(unknown.sum())
        log.warning("%s: skipped %d interaction(s) with unknown items (unknown_items=skip)", file,
                    report["unknown_item_rows"])
        df = df.loc[~unknown]
    if len(df) == 0:
        raise DataError(f"no interaction left after the counted skips {report}", file=file)
    df = df.sort_values(["timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    return df, report


def validate_queries(queries: pd.DataFrame, item_ids: pd.Series, file: str = "queries") -> pd.DataFrame:
    _require_columns(queries, REQUIRED_QUERY_COLUMNS, file)
    _require_nonempty(queries, file)
    df = queries.copy()
    df["item_id"] = to_int_ids(df["item_id"], file, "item_id")
    empty = df["query_text"].isna() | (df["query_text"].astype(str).str.strip() == "")
    if empty.any():
        raise DataError("empty query text", file=file, column="query_text", examples=df.loc[empty])
    unknown = ~df["item_id"].isin(item_ids)
    if unknown.any():
        raise DataError(f"{int(unknown.sum())} quer(y/ies) point at unknown items", file=file, column="item_id",
                        examples=df.loc[unknown])
    if "timestamp" in df.columns:
        df["timestamp"] = to_utc(df["timestamp"], file, "timestamp")
    return df.reset_index(drop=True)


def validate_users(users: pd.DataFrame, file: str = "users") -> pd.DataFrame:
    _require_columns(users, ("user_id",), file)
    df = users.copy()
    df["user_id"] = to_int_ids(df["user_id"], file, "user_id")
    dup = df["user_id"].duplicated(keep=False)
    if dup.any():
        raise DataError("duplicate user ids", file=file, column="user_id", examples=df.loc[dup])
    return df.reset_index(drop=True)
