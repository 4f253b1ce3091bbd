"""Duplicate pairs -> groups, each with a keeper chosen by a policy.

Groups are connected components of the duplicate pairs, with a guard against chaining:
every member must itself be a duplicate of the group's keeper. Members that are not
(linked only through another member) are split off and grouped again among themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from lookalike.scan.keepers import Candidate, choose_keeper


@dataclass(frozen=True)
class GroupPlan:
    """One group: keeper id, why it is the keeper (a KEEP_REASONS code), and
    (member id, similarity to keeper) per member."""

    keep: int
    keep_by: str
    members: tuple[tuple[int, float], ...]


def _components(nodes: Iterable[int], edges: Mapping[int, Mapping[int, float]]) -> list[list[int]]:
    """Connected components of the graph restricted to `nodes` (each sorted)."""
    allowed = set(nodes)
    seen: set[int] = set()
    out = []
    for start in sorted(allowed):
        if start in seen:
            continue
        seen.add(start)
        stack, part = [start], []
        while stack:
            node = stack.pop()
            part.append(node)
            for other in edges.get(node, {}):
                if other in allowed and other not in seen:
                    seen.add(other)
                    stack.append(other)
        out.append(sorted(part))
    return out


def build_groups(
    candidates: Mapping[int, Candidate],
    pairs: Iterable[tuple[int, int, float, bool]],
    *,
    min_similarity: float,
    keep: str = "best",
    not_duplicates: Collection[tuple[str, str]] = (),
    keep_marks: Collection[str] = (),
) -> list[GroupPlan]:
    """Group files whose pairs are duplicates (similarity >= min_similarity, or exact).

    `not_duplicates` holds content-hash pairs (sorted) the user marked: such a pair is
    never a duplicate. A member whose content is in `keep_marks` (the user's choice)
    is the keeper, before the policy; a file under a reference folder (`reference`) before
    both, and other reference files are never members (nor is a pair of two of them a
    duplicate). Links leading out of their root (`outside`) are keepers only when every
    member is one. Groups come largest first, then by keeper path.
    """
    marked = set(not_duplicates)
    chosen = set(keep_marks)
    edges: dict[int, dict[int, float]] = defaultdict(dict)
    for a, b, similarity, exact in pairs:
        if a not in candidates or b not in candidates or a == b:
            continue
        if not exact and similarity < min_similarity:
            continue
        if candidates[a].reference and candidates[b].reference:
            continue  # reference folders are not checked against themselves
        ha, hb = candidates[a].hash, candidates[b].hash
        if ha != hb and (min(ha, hb), max(ha, hb)) in marked:
            continue
        score = 1.0 if exact else float(similarity)
        edges[a][b] = edges[b][a] = score

    plans: list[GroupPlan] = []
    pending = _components(edges, edges)
    while pending:
        part = pending.pop()
        if len(part) < 2:
            continue
        everyone = [candidates[n] for n in part]
        pool = [c for c in everyone if not c.outside] or everyone
        user = [c for c in pool if c.hash in chosen]
        kept = [c for c in pool if c.reference]
        if kept:
            keeper = choose_keeper(kept, keep)[0] if len(kept) > 1 else kept[0]
            why = "reference"
        elif user:
            keeper, why = min(user, key=lambda c: c.path), "user"
        elif len(pool) == 1:
            keeper, why = pool[0], "inside-root"
        else:
            inside = set(part)
            links = {c.id: sum(1 for n in edges[c.id] if n in inside) for c in pool}
            keeper, why = choose_keeper(pool, keep, links)
        linked = edges[keeper.id]
        # Other reference files stay out of the group: they are never to be removed.
        near = sorted(
            ((n, linked[n]) for n in part if n in linked and not candidates[n].reference),
            key=lambda m: (-m[1], m[0]),
        )
        members = [(keeper.id, 1.0), *near]
        if len(members) >= 2:
            plans.append(GroupPlan(keeper.id, why, tuple(members)))
        rest = [n for n in part if n != keeper.id and (n not in linked or candidates[n].reference)]
        pending.extend(_components(rest, edges))
    plans.sort(key=lambda g: (-len(g.members), candidates[g.keep].path))
    return plans
