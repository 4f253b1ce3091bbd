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


def _lint_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """The contracts checked on a copy of the package with `line` added to `module`."""
    copy = tmp_path / "src"
    shutil.copytree(
        SRC / "lookalike",
        copy / "lookalike",
        ignore=shutil.ignore_patterns("*.pt", "*.jpg", "__pycache__", "samples", "models"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    changed = copy / "lookalike" / module
    changed.write_text(changed.read_text() + f"\n{line}  # noqa\n")
    return _lint(copy, tmp_path)


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """records importing train (a lower module importing a higher one) breaks the build."""
    result = _lint_with(tmp_path, "records/__init__.py", "import lookalike.train")
    assert result.returncode != 0
    assert "lookalike.records -> lookalike.train" in result.stdout


def test_sql_outside_the_index_breaks_the_build(tmp_path: Path) -> None:
    result = _lint_with(tmp_path, "scan/run.py", "import sqlite3")
    assert result.returncode != 0
    assert "Only the index speaks SQL BROKEN" in result.stdout


def test_the_index_importing_the_model_breaks_the_build(tmp_path: Path) -> None:
    result = _lint_with(tmp_path, "index/store.py", "import lookalike.model")
    assert result.returncode != 0
    assert "never the model BROKEN" in result.stdout
