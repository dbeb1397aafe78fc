"""The ablation harness: each component switches exactly its own config keys; an ablation reruns from the
component's stage only, and is compared with the full run on the same test examples."""

from __future__ import annotations

import json
import shutil

import numpy as np
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


def _every_option_on() -> RunConfig:
    """The demo config with every optional recipe component on, so that each can be switched off."""
    data = load_model(RunConfig, "configs/demo.yaml").model_dump(mode="python")
    train = data["embedding"]["train"]
    train.update(patterns={"i2i": ["omni->omni", "image->text"]}, micl_weight=0.1, tasks=[*train["tasks"], "graded"],
                 stages="progressive")
    train["model"]["late_fusion"] = True
    return RunConfig.model_validate(data)


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_each_component_switches_exactly_its_own_keys(name):
    base = _every_option_on()
    component = COMPONENTS[name]
    ablated = ablated_config(base, component)
    before, after = _flat(base), _flat(ablated)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    keys = set(component.overrides(base))

    def under(key: str, override: str) -> bool:  # a dict-valued override changes the keys below it
        return key == override or key.startswith(override + ".")

    assert all(any(under(k, o) for o in keys) for k in changed), (name, changed)   # nothing else changes
    assert all(any(under(k, o) for k in changed) for o in keys), (name, changed)   # and each override does


@pytest.mark.parametrize("name", ["recipe.patterns", "recipe.micl", "recipe.late_fusion", "dataset.graded",
                                  "recipe.balancing", "recipe.hard_negatives", "recipe.progressive"])
def test_a_component_the_run_does_not_use_cannot_be_switched_off(name):
    with pytest.raises(ConfigError, match="ablating"):
        ablated_config(load_model(RunConfig, "configs/demo.yaml"), COMPONENTS[name])


def test_ablation_reruns_from_its_stage_and_pairs_with_the_full_run(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    rows = run_ablations(run, ["features.collaborative", "cre.content_anchor", "missing.audio", "features.sid"])
    scratch = run / "ablations" / "features.collaborative"
    for stage in ("embedding", "teachers", "cre"):                        # reused, not refitted
        assert (json.loads((scratch / "stages" / f"{stage}.json").read_text())
                == json.loads((run / "stages" / f"{stage}.json").read_text())), stage
    features = json.loads((scratch / "stages" / "features.json").read_text())
    assert features["fingerprint_inputs"]["features.collaborative"] is False  # rerun with the component off
    assert not (scratch / "stages" / "simulation.json").exists()          # ablations stop at the ranking stage
    off = rows.loc[rows["component"] == "features.collaborative"].set_index("variant")
    assert {"baseline", "match", "match_sid", "dlrm_baseline", "dlrm_match_sid"} <= set(off.index)
    assert (off["auc_change_lo"] <= off["auc_change"]).all() and (off["auc_change"] <= off["auc_change_hi"]).all()
    assert (off["auc_change"] != 0).all()                                 # every ranker had the score
    assert off["retrieval_change"].map(len).eq(0).all()                   # no retrieval stage reran
    anchor = rows.loc[rows["component"] == "cre.content_anchor"]
    change = anchor["retrieval_change"].iloc[0]                           # CRE reran: its metrics, paired
    assert change and all(k.startswith("cre.") for k in change), change
    assert all(lo <= d <= hi for d, lo, hi in change.values())
    assert (rows.loc[rows["component"] != "features.sid", "seconds"] > 0).all()
    assert json.loads((run / "ablation.json").read_text())["components"] == [
        "features.collaborative", "cre.content_anchor", "missing.audio", "features.sid"]
    # missing audio at inference: the same (deterministically retrained) model, other item vectors
    missing = run / "ablations" / "missing.audio"
    assert (missing / "embedding" / "model" / "model.safetensors").read_bytes() == \
        (run / "embedding" / "model" / "model.safetensors").read_bytes()
    full_vec = pd.read_parquet(run / "embedding" / "item_embeddings.parquet").set_index("item_id")["embedding"]
    miss_vec = pd.read_parquet(missing / "embedding" / "item_embeddings.parquet").set_index("item_id")["embedding"]
    assert any(not np.allclose(a, miss_vec[i]) for i, a in full_vec.items())
    sid = rows.loc[rows["component"] == "features.sid"]
    assert len(sid) == 2 and sid["what"].str.contains("without semantic IDs").all()
    report = (run / "results.md").read_text()
    assert "## Ablations" in report and "features.collaborative" in report
    with pytest.raises(ConfigError, match="unknown ablation components"):
        run_ablations(run, ["nope"])
