"""What a finished scan stored: its result, read back, and groups at another cut-off."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lookalike.index import Index, open_index
from lookalike.records import FileError, Group, Member, Pair, ScanResult, ScanStats, Shot
from lookalike.scan.groups import GroupPlan, build_groups
from lookalike.scan.keepers import Candidate
from lookalike.scan.walk import ScanError, inside_any, leads_out_of
from lookalike.score import decide


def reference_folders(store: Index) -> list[str]:
    """The reference folders of the last finished scan (absolute paths)."""
    return [str(p) for p in store.settings().get("reference", ()) or ()]  # type: ignore[attr-defined]


def candidates(
    store: Index, scan_id: int | None = None, reference: Sequence[str] | None = None
) -> dict[int, Candidate]:
    """The files that can take part in groups (readable, not another path of a file).

    `reference`: absolute reference folders (default: those of the last finished scan).
    """
    folders = reference_folders(store) if reference is None else reference
    roots = {r.id: r.path for r in store.roots()}
    traits = store.traits()
    return {
        row.id: Candidate(
            row.id,
            row.shown,
            row.width,
            row.height,
            row.size,
            row.mtime_ns,
            row.walk_order,
            row.hash,
            row.is_link and leads_out_of(row.path, roots.get(row.root_id or -1)),
            traits.get(row.hash),
            inside_any(row.path, folders),
        )
        for row in store.candidate_rows(scan_id)
    }


def read_result(
    index: Index | str | os.PathLike[str], stats: ScanStats | None = None
) -> ScanResult:
    """The stored outcome of the last scan of an index: pairs, groups, errors, settings.

    Reports and the review page read this; nothing is regrouped.
    """
    store = index if isinstance(index, Index) else open_index(index)
    try:
        with store.snapshot():
            settings = store.settings()
            if not settings:
                raise ScanError(f"{store.path}: no finished scan in this index yet")
            cut = float(settings["min_similarity"])  # type: ignore[arg-type]
            shown = store.shown_paths()
            hashes = store.content_hashes()
            marked = store.not_duplicate_marks()
            verified = store.verified_matches()

            def matches(a: int, b: int) -> tuple[int | None, float | None, int]:
                """(matches, coverage, hash bits) that verified the pair, for its record."""
                ha, hb = hashes[a], hashes[b]
                found = verified.get((min(ha, hb), max(ha, hb))) if ha != hb else None
                if found is None:
                    return None, None, -1
                if found.matches:
                    return found.matches, found.coverage, -1
                return None, None, found.hash_bits

            as_path: dict[str, Path] = {}  # one Path per file: a big scan has millions of pairs

            def path_of(name: str) -> Path:
                found = as_path.get(name)
                if found is None:
                    found = as_path[name] = Path(name)
                return found

            pairs = []
            for a, b, similarity, exact in store.pairs():
                pa, pb = sorted((shown[a], shown[b]))
                ha, hb = hashes[a], hashes[b]
                blocked = ha != hb and (min(ha, hb), max(ha, hb)) in marked
                duplicate = (exact or bool(decide(similarity, cut))) and not blocked
                pairs.append(
                    Pair(path_of(pa), path_of(pb), similarity, duplicate, exact, *matches(a, b))
                )
            groups = tuple(
                Group(
                    path_of(shown[g.keep]),
                    tuple(
                        Member(
                            path_of(shown[f]),
                            s,
                            f != g.keep and hashes[f] == hashes[g.keep],
                            *(matches(g.keep, f) if f != g.keep else (None, None, -1)),
                        )
                        for f, s in g.members
                    ),
                    g.keep_by,
                )
                for g in store.groups()
            )
            errors = tuple(FileError(Path(s), e) for s, e in store.unreadable())
            shots = tuple(
                Shot(path_of(shown[a]), path_of(shown[b]), s, c) for a, b, s, c in shot_files(store)
            )
            if stats is None:
                stats = ScanStats(**(store.last_stats() or {}))  # type: ignore[arg-type]
            return ScanResult(
                pairs=tuple(pairs),
                groups=groups,
                errors=errors,
                stats=stats,
                min_similarity=cut,
                review_min_similarity=float(settings["review_min_similarity"]),  # type: ignore[arg-type]
                keep=str(settings["keep"]),
                model=store.model_id,
                index=store.path,
                shots=shots,
            )
    finally:
        if store is not index:
            store.close()


def shot_files(store: Index) -> list[tuple[int, int, float, float]]:
    """(file a, file b, CNN similarity, coverage) of each near-duplicate shot among the
    files indexed now, one file per content (the first by path), most alike first."""
    shown = store.shown_paths()
    first: dict[str, int] = {}
    for file, digest in store.content_hashes().items():
        if file in shown and (digest not in first or shown[file] < shown[first[digest]]):
            first[digest] = file
    found = []
    for (a, b), (similarity, coverage) in store.shot_pairs().items():
        if a in first and b in first:
            x, y = sorted((first[a], first[b]), key=lambda f: shown[f])
            found.append((x, y, similarity, coverage))
    return sorted(found, key=lambda t: (-t[2], shown[t[0]], shown[t[1]]))


def regroup(index: Index, min_similarity: float, keep: str | None = None) -> list[GroupPlan]:
    """Groups at another cut-off, from the stored pairs (for a review slider); not stored.

    Cut-offs below the scan's review cut-off see no more pairs than it stored.
    User marks (not-duplicate pairs, chosen keepers) are respected as in a scan.
    """
    with index.snapshot():
        policy = keep or str(index.settings().get("keep", "best"))
        return build_groups(
            candidates(index),
            index.pairs(),
            min_similarity=min_similarity,
            keep=policy,
            not_duplicates=index.not_duplicate_marks(),
            keep_marks=index.keep_marks(),
        )
