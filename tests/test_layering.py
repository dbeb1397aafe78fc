"""The layering contracts (pyproject.toml [tool.importlinter]) hold on the code and catch a violation.

Each violation case copies the packages into a scratch tree, adds one import that breaks the data flow, and
checks that `lint-imports` fails on it and names the broken contract; so a contract that no longer guards
anything fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys", "embedding", "features", "ranking")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(root / "pyproject.toml")],
                          cwd=root, env={"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def scratch_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_contracts_hold_on_the_code():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


VIOLATIONS = {
    "a stage imports an upstream stage": ("features/statistics.py", "import ranking.metrics", "Data flow"),
    "the embedding imports the features": ("embedding/semantic_ids.py", "import features.definitions", "Data flow"),
    "the ground imports a stage": ("recsys/data/split.py", "import embedding.losses", "Data flow"),
    "features import the embedding model": ("features/statistics.py", "import embedding.model",
                                            "only through files"),
    "two files of a stage import each other": ("features/statistics.py", "import features.interests",
                                               "import circle"),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_a_violation_breaks_a_contract(scratch_tree, case, tmp_path):
    path, line, contract = VIOLATIONS[case]
    root = tmp_path / "tree"
    shutil.copytree(scratch_tree, root)
    target = root / path
    target.write_text(target.read_text() + f"\n{line}\n")
    if case == "two files of a stage import each other":
        other = root / "features" / "interests.py"
        other.write_text(other.read_text() + "\nimport features.statistics\n")
    result = _lint(root)
    assert result.returncode != 0, f"{case}: no contract broke\n{result.stdout}"
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken), (case, broken)
