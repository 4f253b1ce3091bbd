"""Evaluations as terminal tables: systems side by side, positives found per edit family."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from lookalike.records import Evaluation, Metrics


def _fmt(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "-"
    return {
        "int": f"{value:,.0f}",
        "ratio": f"{value:.4f}",
        "pct": f"{value:.0%}",
        "rate": f"{value:,.1f}",
        "ms": f"{value * 1000:.2f}",
        "mb": f"{value:,.0f}",
        "s": f"{value:,.1f}",
    }[kind]


_ROWS: tuple[tuple[str, Callable[[Metrics], float], str], ...] = (
    ("TP", lambda m: m.tp, "int"),
    ("FP", lambda m: m.fp, "int"),
    ("FN", lambda m: m.fn, "int"),
    ("TN", lambda m: m.tn, "int"),
    ("precision", lambda m: m.precision, "ratio"),
    ("recall", lambda m: m.recall, "ratio"),
    ("F1", lambda m: m.f1, "ratio"),
    ("recall @ p0.99", lambda m: m.recall_at_p99, "ratio"),
    ("recall @ p0.999", lambda m: m.recall_at_p999, "ratio"),
    ("same-place pairs", lambda m: m.sibling_pairs or math.nan, "int"),
    (
        "same-place FP rate",
        lambda m: m.sibling_fp / m.sibling_pairs if m.sibling_pairs else math.nan,
        "ratio",
    ),
    ("PR AUC (AP)", lambda m: m.pr_auc, "ratio"),
    ("ROC AUC", lambda m: m.roc_auc, "ratio"),
    ("images/s", lambda m: m.images_per_s, "rate"),
    ("ms per image", lambda m: m.seconds_per_image, "ms"),
    ("seconds", lambda m: m.seconds, "s"),
    ("CPU utilisation", lambda m: m.cpu_util, "pct"),
    ("peak memory (MB)", lambda m: m.peak_rss_mb, "mb"),
)


def print_table(console: Console, table: Table) -> None:
    """A table on a terminal fits it; piped, it keeps its natural width (no wrapped cells)."""
    if console.is_terminal:
        console.print(table)
        return
    for column in table.columns:
        column.no_wrap = True
    width = console.measure(table, options=console.options.update_width(10_000)).maximum
    before = console.width
    console.width = max(before, width)
    try:
        console.print(table)
    finally:
        console.width = before


def _decision(metrics: Metrics) -> str:
    if metrics.max_distance is not None:
        return f"distance ≤ {metrics.max_distance:.0f}"
    return f"similarity ≥ {metrics.min_score:.4f}"


def comparison_table(evaluations: Sequence[Evaluation], title: str = "") -> Table:
    """Systems side by side; each peer's cell also shows first system ÷ that peer."""
    first = evaluations[0].metrics
    table = Table(
        title=title or None,
        caption=f"(r×) = {first.system} ÷ that system; times include decoding",
    )
    table.add_column("")
    for e in evaluations:
        table.add_column(e.metrics.system, justify="right")
    table.add_row("decision", *[_decision(e.metrics) for e in evaluations])
    for label, get, kind in _ROWS:
        cells = [_fmt(float(get(first)), kind)]
        for e in evaluations[1:]:
            mine, theirs = float(get(first)), float(get(e.metrics))
            ratio = f" ({mine / theirs:.2f}×)" if theirs and math.isfinite(mine / theirs) else ""
            cells.append(_fmt(theirs, kind) + ratio)
        table.add_row(label, *cells)
    return table


def families_table(evaluations: Sequence[Evaluation]) -> Table:
    """Positives found per edit family: at each system's decision, and at precision 0.99."""
    table = Table(
        title="positives found per edit family",
        caption="at the system's decision cut-off · at the cut-off giving precision 0.99",
    )
    table.add_column("family")
    table.add_column("pairs", justify="right")
    for e in evaluations:
        table.add_column(e.metrics.system, justify="right")
    for family, count in evaluations[0].metrics.positives_by_family.items():
        cells = []
        for e in evaluations:
            m = e.metrics
            found = round(m.recall_by_family.get(family, 0.0) * count)
            found99 = round(m.recall_by_family_at_p99.get(family, 0.0) * count)
            cells.append(f"{found} · {found99}")
        table.add_row(family, str(count), *cells)
    return table
