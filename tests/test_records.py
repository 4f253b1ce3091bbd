"""Records: frozen dataclasses only, and the little logic they carry."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

import lookalike.records as records
from lookalike.records import Comparison, Group, Member


def _record_classes() -> list[type]:
    return [
        cls
        for _, cls in inspect.getmembers(records, inspect.isclass)
        if cls.__module__ == records.__name__
    ]


def test_every_record_is_a_frozen_dataclass() -> None:
    classes = _record_classes()
    assert Comparison in classes and Group in classes
    for cls in classes:
        assert dataclasses.is_dataclass(cls), cls.__name__
        assert cls.__dataclass_params__.frozen, cls.__name__  # type: ignore[attr-defined]


def test_records_cannot_be_changed() -> None:
    result = Comparison(Path("a.jpg"), Path("b.jpg"), 0.97, True, 0.9, "m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.similarity = 0.1  # type: ignore[misc]


def test_group_duplicates_are_the_members_but_the_keeper() -> None:
    keep = Path("big.jpg")
    group = Group(
        keep,
        (Member(keep, 1.0), Member(Path("small.jpg"), 0.96), Member(Path("crop.jpg"), 0.93)),
    )
    assert group.duplicates == (Path("small.jpg"), Path("crop.jpg"))


def test_every_typed_error_is_a_lookalike_error_with_an_exit_code() -> None:
    """One base for the library's errors: the CLI needs one translator, callers one except."""
    from lookalike import CheckpointError, LookalikeError, UnreadableImage
    from lookalike.evaluate import BenchmarkError, PeerUnavailable, PlotsUnavailable
    from lookalike.index import IndexSchemaError, ModelMismatch
    from lookalike.scan import ScanError
    from lookalike.web.pictures import Refused
    from lookalike.web.review import ReviewError

    for error in (
        CheckpointError,
        BenchmarkError,
        PeerUnavailable,
        PlotsUnavailable,
        IndexSchemaError,
        ModelMismatch,
        ScanError,
        Refused,
        ReviewError,
    ):
        assert issubclass(error, LookalikeError) and error.exit_code == 2, error
    unreadable = UnreadableImage("x.jpg", "file not found")
    assert isinstance(unreadable, LookalikeError) and unreadable.exit_code == 1
    assert (unreadable.kind, UnreadableImage("x.jpg", "truncated image").kind) == (
        "missing",
        "content",
    )
