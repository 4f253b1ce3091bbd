"""The layering contract (pyproject.toml, import-linter) holds, covers every module, and bites."""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import lookalike

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

_RUN = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
)


def _lint(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [sys.executable, "-c", _RUN], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def test_import_contract_is_kept() -> None:
    result = _lint(SRC, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_module_is_in_a_layer() -> None:
    """A module left out of the contract would escape it."""
    covered = set(_layers())
    modules = {
        f"lookalike.{info.name}"
        for info in pkgutil.iter_modules(lookalike.__path__)
        if info.name != "__main__"
    }
    assert modules - covered == set()


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """records importing train (a lower module importing a higher one) breaks the build."""
    copy = tmp_path / "src"
    shutil.copytree(
        SRC / "lookalike",
        copy / "lookalike",
        ignore=shutil.ignore_patterns("*.pt", "*.jpg", "__pycache__", "samples", "models"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    records = copy / "lookalike" / "records" / "__init__.py"
    records.write_text(records.read_text() + "\nimport lookalike.train  # noqa\n")
    result = _lint(copy, tmp_path)
    assert result.returncode != 0
    assert "lookalike.records -> lookalike.train" in result.stdout
