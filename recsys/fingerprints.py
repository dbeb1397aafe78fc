"""Stage fingerprints: what each stage of the main job was built from, so a rerun never reuses a stale artefact.

A stage's fingerprint hashes the config sections it reads (flattened to dotted keys), the run seed and device,
and the fingerprints of the stages it consumes; stages that read the dataset also hash its content hash. A stage
whose fingerprint differs from its marker's reruns from scratch, and so does everything downstream of it (their
fingerprints include it). The marker keeps the flattened inputs, so the rerun says which keys changed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

STAGE_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # stage: (upstream stages, config sections)
    "data": ((), ("data", "world")),
    "encode": (("data",), ("encoders",)),
    "embedding": (("encode",), ("embedding.train", "embedding.semantic_ids")),
    "teachers": (("data",), ("teachers",)),
    "cre": (("embedding", "teachers"), ("embedding.cre",)),
    "features": (("embedding", "teachers", "cre"), ("features",)),
    "ranking": (("features",), ("ranking",)),
    "simulation": (("ranking",), ("simulation",)),
}
RUN_KEYS = ("seed", "device")
"""Top-level keys every stage depends on. Of the others, num_threads and precision reach the stage configs (and are
hashed there); engine, spark_master and spark_conf choose where a stage computes, not what (the same artefacts,
tested), so changing one reuses them."""


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def _section(cfg: BaseModel, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node.model_dump(mode="json") if isinstance(node, BaseModel) else node


def stage_inputs(cfg: BaseModel, stage: str, upstream: dict[str, str], content_hash: str | None) -> dict[str, Any]:
    """Flattened inputs of `stage`: its config keys, the run keys, its upstream fingerprints (and the dataset's
    content hash for stages that read the dataset directly)."""
    ups, sections = STAGE_INPUTS[stage]
    out: dict[str, Any] = {}
    for key in RUN_KEYS:
        out[key] = getattr(cfg, key)
    for section in sections:
        _flatten(_section(cfg, section), section, out)
    for up in ups:
        out[f"<{up} stage>"] = upstream[up]
    if "data" in ups and content_hash is not None:
        out["<dataset content>"] = content_hash
    return out


def fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_keys(before: dict[str, Any] | None, after: dict[str, Any], limit: int = 6) -> str:
    """'key: old -> new' for the keys that differ (upstream stages shown by name), for the rerun message."""
    if before is None:
        return "built by an earlier version without a fingerprint"
    keys = sorted(k for k in {*before, *after} if before.get(k, "<unset>") != after.get(k, "<unset>"))
    parts = [k if k.startswith("<") else f"{k}: {before.get(k, '<unset>')!r} -> {after.get(k, '<unset>')!r}"
             for k in keys[:limit]]
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "; ".join(parts) + more
