"""Outputs: the JSON objects of every command (`payloads`) and the scan's files — JSON,
CSV, a removal list and a paginated HTML report (`files`). Formatting only."""

from lookalike.report.files import TEMPLATES, write_csv, write_html, write_json, write_list
from lookalike.report.payloads import (
    JSON_SCHEMA,
    comparison_payload,
    explanation_payload,
    leaks_payload,
    lookalikes_payload,
    quarantine_payload,
    scan_payload,
)

__all__ = [
    "JSON_SCHEMA",
    "TEMPLATES",
    "comparison_payload",
    "explanation_payload",
    "leaks_payload",
    "lookalikes_payload",
    "quarantine_payload",
    "scan_payload",
    "write_csv",
    "write_html",
    "write_json",
    "write_list",
]
