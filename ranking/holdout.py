"""The time-ordered holdout every ranker carves out of its training frame (early stopping, calibration).

The holdout is the latest part of the TRAINING frame by time, so a ranker never sees the test frame while it
fits, and the holdout looks like the test period does to the fitted model: later, with some ids it never saw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.errors import DataError


def time_holdout(frame: pd.DataFrame, fraction: float, time_col: str = "event_timestamp") -> np.ndarray:
    """Boolean mask of the holdout: rows at or after the time quantile (1 - fraction) of `time_col`.

    Whole timestamps go to one side. If that leaves an empty side (e.g. one timestamp), the last rows in
    stable time order form the holdout instead.
    """
    n = len(frame)
    if n < 2:
        raise DataError(f"need at least 2 training rows for a time holdout, got {n}")
    if time_col not in frame.columns:
        raise DataError("training frame lacks the time column of the holdout", column=time_col)
    ts = frame[time_col].to_numpy()
    order = np.argsort(ts, kind="stable")
    cut_pos = min(n - 1, max(1, int(np.floor(n * (1 - fraction)))))
    mask = ts >= ts[order[cut_pos]]
    if mask.all() or not mask.any():
        mask = np.zeros(n, dtype=bool)
        mask[order[cut_pos:]] = True
    return mask
