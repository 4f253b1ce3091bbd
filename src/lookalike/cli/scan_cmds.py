"""Commands that scan collections: scan, query, leaks, demo (clean-up: cleanup_cmds)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from lookalike.cli._app import (
    EXIT_FOUND,
    EXIT_OK,
    JSON_OPTION,
    MIN_SIMILARITY_OPTION,
    MODEL_OPTION,
    SETTINGS,
    VERIFY_NEAREST_OPTION,
    app,
    fail,
    load_model_option,
    print_json,
    show_progress,
    stderr,
    stdout,
    user_errors,
)
from lookalike.records import ScanProgress


class _Rate(ProgressColumn):
    """Items per second of the current stage."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


_STAGES = {
    "walk": "finding files",
    "embed": "embedding images",
    "search": "searching pairs",
    "verify": "verifying pairs",
    "keepers": "measuring keepers",
    "group": "grouping",
}


def _progress_bar(json_output: bool) -> tuple[Progress, Callable[[ScanProgress], None]]:
    """A Rich progress display (only on a terminal) and the callback that drives it."""
    progress = Progress(
        TextColumn("{task.description:<17}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
        console=stderr(),
        disable=not show_progress(json_output),
    )
    tasks: dict[str, Any] = {}

    def update(event: ScanProgress) -> None:
        if event.stage not in tasks:
            tasks[event.stage] = progress.add_task(
                _STAGES.get(event.stage, event.stage), total=event.total
            )
        progress.update(tasks[event.stage], completed=event.done, total=event.total)

    return progress, update


@app.command()
def scan(
    folders: list[Path] = typer.Argument(None, help="Folders (or image files) to scan."),
    index: Path = typer.Option(..., "--index", "-i", help="Index file (created if missing)."),
    files_from: str | None = typer.Option(
        None, "--files-from", help="Also scan the files listed in FILE, one per line (- = stdin)."
    ),
    min_similarity: float | None = MIN_SIMILARITY_OPTION,
    review_min_similarity: float | None = typer.Option(
        None,
        "--review-min-similarity",
        min=0.0,
        max=1.0,
        help="Also list pairs down to this for review (default: min-similarity - 0.03).",
    ),
    keep: str = typer.Option(
        "best",
        "--keep",
        help="Keeper of each group: best (the copy the others look like edits of), "
        "largest, oldest, newest, shortest-path or first.",
    ),
    reference: list[Path] | None = typer.Option(
        None,
        "--reference",
        help="A folder to check against that is never cleaned up (repeatable): its files "
        "keep any group they are in, and its own copies are not reported.",
    ),
    json_out: Path | None = typer.Option(None, "--json-out", help="Write pairs/groups as JSON."),
    csv_out: Path | None = typer.Option(None, "--csv-out", help="Write one CSV row per pair."),
    list_out: Path | None = typer.Option(
        None, "--list-out", help="Write the files to remove, one per line (for xargs)."
    ),
    html_out: Path | None = typer.Option(
        None, "--html-out", help="Write an HTML report with thumbnails into this folder."
    ),
    model: Path | None = MODEL_OPTION,
    include_hidden: bool = typer.Option(
        False, "--include-hidden", help="Also scan hidden files and folders."
    ),
    json_output: bool = JSON_OPTION,
    verify: bool = typer.Option(
        True,
        "--verify/--no-verify",
        help="Confirm ambiguous pairs by local-feature matching (--no-verify: faster, "
        "fewer geometric copies found).",
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="Embed and verify here (local) or on a Ray cluster's workers (ray; extra [ray]).",
    ),
    address: str | None = typer.Option(
        None, "--address", help="With --engine ray: the cluster to join (default: start Ray here)."
    ),
    shards_dir: Path | None = typer.Option(
        None,
        "--shards-dir",
        help="With --engine ray: folder for the Parquet shards (default: INDEX.shards).",
    ),
    verify_nearest: int | None = VERIFY_NEAREST_OPTION,
) -> None:
    """Find duplicate groups among images and keep them in an index (rerun = incremental)."""
    from lookalike.scan import KEEP_POLICIES, scan_folder

    if keep not in KEEP_POLICIES:
        raise fail(f"--keep must be one of {', '.join(KEEP_POLICIES)}")
    if engine not in ("local", "ray"):
        raise fail("--engine must be local or ray")
    if engine == "local" and (address or shards_dir):
        raise fail("--address and --shards-dir need --engine ray")
    if not folders and files_from is None:
        raise fail("give folders to scan, or --files-from FILE")
    if verify_nearest is not None and not verify:
        raise fail("--verify-nearest needs verification (drop --no-verify)")
    listed: Any = None
    if files_from == "-":
        listed = sys.stdin.read().splitlines()
    elif files_from is not None:
        listed = Path(files_from)
    progress, on_progress = _progress_bar(json_output)
    shards = shards_dir or index.with_name(index.name + ".shards")
    with user_errors(), progress, _embedder(engine, address, shards) as embedder:
        loaded = load_model_option(model, verify_nearest)
        result = scan_folder(
            folders or [],
            index,
            model=loaded,
            min_similarity=min_similarity,
            review_min_similarity=review_min_similarity,
            keep=keep,
            files_from=listed,
            include_hidden=include_hidden,
            on_progress=on_progress,
            embedder=embedder,
            verifier=embedder.verifier if embedder is not None else None,
            verify=verify,
            reference=reference or [],
        )
    written = _write_outputs(result, json_out, csv_out, list_out, html_out)
    if json_output:
        from lookalike.report import scan_payload

        print_json(scan_payload(result))
        return
    _print_summary(result, written)


@contextmanager
def _embedder(engine: str, address: str | None, shards: Path) -> Iterator[Any]:
    """None for the local engine; a RayEmbedder (Ray started or joined) for the ray engine."""
    if engine == "local":
        yield None
        return
    try:
        from lookalike.distributed import RayEmbedder
    except ImportError:
        raise fail("--engine ray needs Ray Data: pip install 'lookalike[ray]'") from None
    with RayEmbedder(shards, address=address) as embedder:
        yield embedder


def _write_outputs(
    result: Any,
    json_out: Path | None,
    csv_out: Path | None,
    list_out: Path | None,
    html_out: Path | None,
) -> list[str]:
    from lookalike import report

    written = []
    if json_out:
        written.append(f"JSON: {report.write_json(result, json_out)}")
    if csv_out:
        written.append(f"CSV: {report.write_csv(result, csv_out)}")
    if list_out:
        path, left_out = report.write_list(result, list_out)
        written.append(f"removal list: {path}")
        for name in left_out:
            stderr().print(f"not in the removal list (line break in its name): {name!r}")
    if html_out:
        written.append(f"HTML report: {report.write_html(result, html_out)}")
    return written


def _print_summary(result: Any, written: list[str]) -> None:
    from lookalike.scan import KEEP_REASONS

    out, err = stdout(), stderr()
    stats = result.stats
    duplicates = sum(len(g.duplicates) for g in result.groups)
    if not SETTINGS.quiet:
        for error in result.errors:
            err.print(f"unreadable: {error.path}: {error.reason}", markup=False)
    out.print(
        f"{stats.images} images in {stats.files} files: {stats.groups} duplicate groups, "
        f"{duplicates} files to remove ({stats.exact_duplicates} exact copies), "
        f"{stats.errors} unreadable; {stats.seconds:.1f} s "
        f"({stats.embedded} embedded, {stats.images_per_s:.0f} images/s)",
        markup=False,
    )
    if result.shots:
        out.print(
            f"{len(result.shots)} near-duplicate shots (photos of one scene, not copies): "
            "listed apart in the reports, never removed",
            markup=False,
        )
    if SETTINGS.verbose:
        for group in result.groups:
            why = KEEP_REASONS.get(group.keep_reason, group.keep_reason)
            out.print(f"keep {group.keep} ({why})", markup=False)
            for member in group.members:
                if member.path != group.keep:
                    out.print(f"  {member.similarity_to_keep:.4f}  {member.path}", markup=False)
    out.print(f"index: {result.index}", markup=False)
    for line in written:
        out.print(line, markup=False)


@app.command()
def query(
    image: Path = typer.Argument(..., help="Image to look up."),
    index: Path = typer.Option(..., "--index", "-i", help="Index made by `lookalike scan`."),
    k: int = typer.Option(10, "-k", "--top", min=1, help="How many lookalikes to list."),
    model: Path | None = MODEL_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """List the indexed images most like IMAGE, best first."""
    from lookalike.report import lookalikes_payload
    from lookalike.scan import find_lookalikes

    with user_errors():
        loaded = load_model_option(model)
        found = find_lookalikes(image, index, model=loaded, k=k)
    if json_output:
        print_json(lookalikes_payload(image, found))
        return
    out = stdout()
    for pair in found:
        tag = "exact copy" if pair.exact else ("duplicate" if pair.duplicate else "")
        out.print(f"{pair.similarity:.4f}  {pair.b}  {tag}".rstrip(), markup=False)


@app.command()
def leaks(
    splits: list[Path] = typer.Argument(
        ..., help="Splits: folders or index files (2 or more, or 1 with --reference)."
    ),
    reference: list[Path] | None = typer.Option(
        None,
        "--reference",
        help="Also look for copies of a reference folder or index (repeatable), e.g. a public "
        "test set; its own images are never reported.",
    ),
    labels_from_folders: bool = typer.Option(
        False,
        "--labels-from-folders",
        help="Also report duplicates filed under different class folders.",
    ),
    min_similarity: float | None = MIN_SIMILARITY_OPTION,
    index_dir: Path | None = typer.Option(
        None, "--index-dir", help="Keep the folders' indexes here (reruns are incremental)."
    ),
    model: Path | None = MODEL_OPTION,
    json_output: bool = JSON_OPTION,
    verify_nearest: int | None = VERIFY_NEAREST_OPTION,
) -> None:
    """Find images duplicated across dataset splits (exit 0 none, 1 found, 2 error)."""
    from lookalike.scan import find_leaks

    progress, on_progress = _progress_bar(json_output)
    with user_errors(), progress:
        loaded = load_model_option(model, verify_nearest)
        report = find_leaks(
            splits,
            model=loaded,
            min_similarity=min_similarity,
            labels_from_folders=labels_from_folders,
            index_dir=index_dir,
            on_progress=on_progress,
            reference=reference or [],
        )
    found = bool(report.leaks) or bool(report.label_conflicts)
    if json_output:
        from lookalike.report import leaks_payload

        print_json(leaks_payload(report))
        raise typer.Exit(EXIT_FOUND if found else EXIT_OK)
    out = stdout()
    for leak in report.leaks:
        best = leak.matches[0]
        more = f" (+{len(leak.matches) - 1} more)" if len(leak.matches) > 1 else ""
        out.print(
            f"{leak.split}: {leak.path}  ~  {best.split}: {best.path}  {best.similarity:.4f}{more}",
            markup=False,
        )
    for pair, count in report.split_counts.items():
        first, second = pair.split("|", 1)
        out.print(f"{count} images shared between {first} and {second}", markup=False)
    for conflict in report.label_conflicts:
        paths = ", ".join(str(m.path) for m in conflict.members)
        out.print(f"labels {' / '.join(conflict.labels)}: {paths}", markup=False)
    if not found:
        out.print(f"no leaks between {len(report.splits)} splits")
    raise typer.Exit(EXIT_FOUND if found else EXIT_OK)


@app.command()
def demo(
    folder: Path = typer.Argument(Path("lookalike-demo"), help="New or empty folder to use."),
    model: Path | None = MODEL_OPTION,
) -> None:
    """Write sample photos with edited copies, scan them, and write the HTML report."""
    from lookalike.report import write_html
    from lookalike.scan import scan_folder, write_demo_folder

    progress, on_progress = _progress_bar(False)
    with user_errors(), progress:
        loaded = load_model_option(model)
        photos = write_demo_folder(folder)
        result = scan_folder(
            [photos], folder / "demo.lookalike", model=loaded, on_progress=on_progress
        )
    page = write_html(result, folder / "report")
    out = stdout()
    out.print(
        f"{result.stats.images} sample images in {photos}: {result.stats.groups} duplicate groups",
        markup=False,
    )
    out.print(f"report: {page.resolve()}", markup=False)
    out.print(
        f"index:  {result.index}   (try: lookalike query IMAGE --index {result.index})",
        markup=False,
    )
