"""The ablation harness: each component switches exactly its own config keys; an ablation reruns from the
component's stage only, and is compared with the full run on the same test examples."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from recsys.ablation import COMPONENTS, ablated_config, run_ablations
from recsys.config import RunConfig
from recsys.config_io import load_model
from recsys.errors import ConfigError


def _flat(cfg: RunConfig) -> dict:
    out: dict = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
        else:
            out[prefix] = node

    walk(cfg.model_dump(mode="json"), "")
    return out


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_each_component_switches_exactly_its_own_keys(name):
    base = load_model(RunConfig, "configs/demo.yaml")
    component = COMPONENTS[name]
    ablated = ablated_config(base, component)
    before, after = _flat(base), _flat(ablated)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == set(component.overrides(base)), (name, changed)


def test_ablation_reruns_from_its_stage_and_pairs_with_the_full_run(tiny_run, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    proc = cli(["ablate", "--run-dir", str(run), "--what", "cre.content_anchor,features.sid"], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scratch = run / "ablations" / "cre.content_anchor"
    stages = {s: json.loads((scratch / "stages" / f"{s}.json").read_text()) for s in ("embedding", "cre")}
    full = {s: json.loads((run / "stages" / f"{s}.json").read_text()) for s in ("embedding", "cre")}
    assert stages["embedding"] == full["embedding"]                       # reused, not retrained
    assert stages["cre"]["fingerprint"] != full["cre"]["fingerprint"]     # rerun with the component off
    assert "content_anchor_weight: 1.0 -> 0.0" in " ".join(proc.stdout.split()) or \
        stages["cre"]["fingerprint_inputs"]["embedding.cre.content_anchor_weight"] == 0.0
    rows = pd.DataFrame(json.loads((run / "ablation.json").read_text())["rows"])
    anchor = rows.loc[rows["component"] == "cre.content_anchor"].set_index("variant")
    assert {"match", "match_sid", "dlrm_match_sid"} <= set(anchor.index)
    assert (anchor["auc_change_lo"] <= anchor["auc_change"]).all() and (anchor["auc_change"]
                                                                         <= anchor["auc_change_hi"]).all()
    assert anchor.loc["baseline", "auc_change"] == 0  # the baseline does not use the embedding
    sid = rows.loc[rows["component"] == "features.sid"]
    assert len(sid) == 2 and sid["what"].str.contains("without semantic IDs").all()
    report = (run / "results.md").read_text()
    assert "## Ablations" in report and "cre.content_anchor" in report
    with pytest.raises(ConfigError, match="unknown ablation components"):
        run_ablations(run, ["nope"])
