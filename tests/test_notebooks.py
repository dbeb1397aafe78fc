"""Execute the notebooks end to end on tiny settings (RECSYS_TINY=1) and check what they show.

Both notebooks share one run directory, in order: 01 runs the pipeline, 02 resumes it, adds a match feature and
re-runs the features and ranking stages. The kernel is this interpreter (the venv), started from a kernelspec
written to a temporary JUPYTER_PATH, with the repository root as its working directory. After each notebook a
probe cell (added in memory only; the files stay output-free) prints a JSON summary of the kernel's variables.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
KERNEL = "recsys-test-venv"
CELL_TIMEOUT = 1200  # seconds per cell; the pipeline cell of 01 is the long one (~2-4 min on a busy 2-core box)
PROBE_TAG = "__PROBE__"

pytestmark = pytest.mark.slow  # both notebooks together: several minutes on 2 CPU cores (mostly the pipeline)

PROBE_01 = f"""
import json as _json
_out = {{
    "variants": table["variant"].tolist(),
    "table_columns": list(table.columns),
    "summary_items": int(summary["items"]),
    "image_frames": len(frames),
    "audio_seconds": float(len(wav) / sr),
    "neighbours": len(neighbours),
    "neighbour_cos_max": float(neighbours["cosine"].max()),
    "n_centroids": int(k),
    "frame_rows": len(frame),
    "frame_items": [int(i) for i in frame["item_id"]],
    "candidates": [int(c) for c in candidates],
    "frame_columns": list(frame.columns),
    "scores_finite": bool(np.isfinite(scored["score"]).all()),
    "mlflow_variants": sorted(set(runs["tags.variant"])),
    "mlflow_auc_finite": bool(np.isfinite(runs["metrics.auc"]).all()),
}}
print("{PROBE_TAG}" + _json.dumps(_out))
"""

PROBE_02 = f"""
import json as _json
_out = {{
    "registry": list(mf.EMBEDDING_MATCH_FEATURES),
    "variants_with_feature": list(variants_with_feature),
    "before_parent": before_parent,
    "after_parent": after_parent,
    "train_has_column": "cos_centroid_top" in train.columns,
    "train_finite": int(np.isfinite(train["cos_centroid_top"]).sum()),
    "train_rows": len(train),
    "online_finite": int(np.isfinite(online["cos_centroid_top"]).sum()),
    "online_rows": len(online),
    "compare_runs": sorted(set(runs["run"])),
    "compare_variants": sorted(set(runs["tags.variant"])),
    "after_has_feature": runs.loc[runs["run"] == "after", "has_feature"].any(),
    "before_has_feature": runs.loc[runs["run"] == "before", "has_feature"].any(),
    "side_by_side_columns": [list(c) for c in side_by_side.columns],
    "paired": [float(d), float(lo), float(hi)],
}}
print("{PROBE_TAG}" + _json.dumps(_out, default=bool))
"""


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec for this interpreter and the notebooks' environment (tiny settings, temporary run dir)."""
    root = tmp_path_factory.mktemp("notebooks")
    spec_dir = root / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "recsys venv (tests)", "language": "python"}))
    run_dir = root / "run"
    env = {"JUPYTER_PATH": str(root / "jupyter"), "RECSYS_TINY": "1", "RECSYS_RUN_DIR": str(run_dir),
           "PYTHONWARNINGS": "ignore", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield run_dir
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _execute(name: str, probe: str) -> tuple[object, dict]:
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), f"{name} must be saved without outputs"
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    line = next(ln for ln in text.splitlines() if ln.startswith(PROBE_TAG))
    return nb, json.loads(line[len(PROBE_TAG):])


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if kind in o.get("data", {})]


@pytest.fixture(scope="module")
def quickstart(kernel_env):
    return _execute("01_quickstart.ipynb", PROBE_01)


def test_quickstart(quickstart, kernel_env):
    nb, out = quickstart
    run_dir = kernel_env
    # the kernel is the venv interpreter and the run went where RECSYS_RUN_DIR said
    assert (run_dir / "stages" / "ranking.json").is_file()
    assert (run_dir / "mlflow.db").is_file()
    # comparison table: the FeatureService variants, with CIs
    assert {"baseline", "match", "match_sid"} <= set(out["variants"]), out["variants"]
    assert {"auc", "auc_lo", "auc_hi", "gauc"} <= set(out["table_columns"])
    assert out["summary_items"] == 300  # configs/tiny.yaml
    # modalities: the cover (and key frames) rendered as a PNG figure, the audio read back
    assert out["image_frames"] >= 1 and out["audio_seconds"] > 0
    assert len(_outputs(nb, "image/png")) >= 2  # item frames + audio figure
    assert out["neighbours"] == 8 and out["neighbour_cos_max"] <= 1 + 1e-5
    assert out["n_centroids"] >= 1
    # online rank frame: one row per candidate, in order, with match features and the unknown flags
    assert out["frame_rows"] == 10 and out["frame_items"] == out["candidates"]
    for col in ("cos_mean", "cos_centroid_max", "sid_0", "item_impressions", "unknown_user", "unknown_item"):
        assert col in out["frame_columns"], col
    assert out["scores_finite"]
    # MLflow: one run per variant, found by search_runs
    assert set(out["variants"]) <= set(out["mlflow_variants"])
    assert out["mlflow_auc_finite"]


def test_add_a_match_feature(quickstart, kernel_env):
    nb, out = _execute("02_add_a_match_feature.ipynb", PROBE_02)
    assert "cos_centroid_top" in out["registry"]
    # the feature flowed into the rankers through the FeatureServices (the notebook has no fallback path)
    assert out["variants_with_feature"], out
    assert out["before_parent"] != out["after_parent"]
    # present in the point-in-time training frame with finite values (NaN only without history)
    assert out["train_has_column"] and out["train_finite"] > out["train_rows"] // 2, out
    # and online, in the notebook's process (runtime registration)
    assert out["online_rows"] == 10 and out["online_finite"] > 0, out
    # MLflow comparison lists both runs, the new feature only in the new one
    assert out["compare_runs"] == ["after", "before"]
    assert "baseline" in out["compare_variants"] and "match" in out["compare_variants"]
    assert out["after_has_feature"] and not out["before_has_feature"]
    assert ["auc [95% CI]", "before"] in out["side_by_side_columns"]
    assert ["auc [95% CI]", "after"] in out["side_by_side_columns"]
    d, lo, hi = out["paired"]
    assert lo <= d <= hi
