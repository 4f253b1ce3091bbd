"""The public API: every name in `lookalike.__all__` resolves, and lazy ones are typed."""

from __future__ import annotations

import ast
import inspect

import lookalike


def test_every_public_name_resolves() -> None:
    for name in lookalike.__all__:
        assert getattr(lookalike, name) is not None, name


def test_lazy_names_are_visible_to_type_checkers() -> None:
    """A name loaded through __getattr__ is Any to mypy unless imported under TYPE_CHECKING."""
    tree = ast.parse(inspect.getsource(lookalike))
    typed: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module
                typed.update({alias.name: stmt.module for alias in stmt.names})
    assert typed == lookalike._LAZY
