"""The project's rankers as MLflow models: a `mlflow.pyfunc.PythonModel` over the ranker's own save directory.

The model's artifacts are exactly what `Ranker.save` writes (``ranker/``), and its ``model_config`` names the kind,
so `mlflow.pyfunc.load_model(uri).predict(frame)` loads the ranker with `ranking.registry.load_ranker` and returns
`Ranker.predict(frame)`: the same numbers as the project, on an ordinary pandas frame (categorical features as plain
ints; the ranker maps them to its training categories). The model is logged "from code" (`ENTRY_POINT`), so
loading it runs this project's code and unpickles nothing; the project must be importable where it is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from ranking.ranker import Ranker
from ranking.registry import load_ranker

ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")
"""The models-from-code file MLflow stores with each model (it builds a `RankerModel`)."""
ARTIFACT = "ranker"


class RankerModel(PythonModel):
    """pyfunc predict = the wrapped ranker's predict: [N] float64 probabilities."""

    ranker: Ranker

    def load_context(self, context: PythonModelContext) -> None:
        self.ranker = load_ranker(context.model_config["kind"], context.artifacts[ARTIFACT])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> np.ndarray:
        return self.ranker.predict(model_input)


def model_input(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """`features` of `frame` as a caller would send them: pandas categoricals as their plain values, nullable
    integers as float (NaN for missing), everything else as it is."""
    out = {}
    for f in features:
        col = frame[f]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(col.cat.categories.dtype) if not col.isna().any() else col.astype(np.float64)
        elif pd.api.types.is_extension_array_dtype(col.dtype) and pd.api.types.is_integer_dtype(col.dtype):
            col = col.astype(np.float64) if col.isna().any() else col.astype(np.int64)
        out[f] = col.to_numpy()
    return pd.DataFrame(out, index=frame.index)
