"""The user errors: the CLI prints their message and exits with status 2 (never a traceback)."""

from __future__ import annotations

import pandas as pd


class DataError(ValueError):
    """Bad input data: the message names the file, the column and shows example rows."""

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None,
                 examples: pd.DataFrame | None = None):
        parts = []
        if file:
            parts.append(f"{file}")
        if column:
            parts.append(f"column '{column}'")
        where = ": ".join(parts)
        text = f"{where}: {message}" if where else message
        if examples is not None and len(examples):
            text += "\n  example rows:\n" + examples.head(5).to_string(max_colwidth=60)
        super().__init__(text)
        self.file, self.column = file, column


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""
