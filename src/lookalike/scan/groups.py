"""Duplicate pairs -> groups, each with a keeper chosen by a policy.

Groups are connected components of the duplicate pairs, with a guard against chaining:
every member must itself be a duplicate of the group's keeper. Members that are not
(linked only through another member) are split off and grouped again among themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

KEEP_POLICIES = ("largest", "oldest", "newest", "shortest-path", "first")
"""How a group's keeper is chosen; ties always go to the path that sorts first."""


@dataclass(frozen=True)
class Candidate:
    """What the keep policies look at for one file."""

    id: int
    path: str
    width: int
    height: int
    size: int
    mtime_ns: int
    order: int
    hash: str
    outside: bool = False
    """A symbolic link leading out of its scan root: never a keeper while a group has
    another member (the review page refuses to show such a file, and a keeper must stay)."""


def keeper_key(policy: str) -> Callable[[Candidate], tuple[object, ...]]:
    """Sort key whose smallest candidate is the keeper under `policy`.

    largest: most pixels, then most bytes; oldest / newest: modification time;
    shortest-path: fewest characters; first: first found by the walk.
    """
    keys: dict[str, Callable[[Candidate], tuple[object, ...]]] = {
        "largest": lambda c: (-(c.width * c.height), -c.size, c.path),
        "oldest": lambda c: (c.mtime_ns, c.path),
        "newest": lambda c: (-c.mtime_ns, c.path),
        "shortest-path": lambda c: (len(c.path), c.path),
        "first": lambda c: (c.order, c.path),
    }
    if policy not in keys:
        raise ValueError(
            f"unknown keep policy {policy!r}; choose one of {', '.join(KEEP_POLICIES)}"
        )
    return keys[policy]


@dataclass(frozen=True)
class GroupPlan:
    """One group: keeper id, why it is the keeper, and (member id, similarity to keeper)."""

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
    keep: str = "largest",
    not_duplicates: Collection[tuple[str, str]] = (),
    keep_marks: Collection[str] = (),
) -> list[GroupPlan]:
    """Group files whose pairs are duplicates (similarity >= min_similarity, or exact).

    `not_duplicates` holds content-hash pairs (sorted) the user marked: such a pair is
    never a duplicate. A member whose content is in `keep_marks` (the user's choice)
    is the keeper, before the policy. Links leading out of their root (`outside`) are
    keepers only when every member is one. Groups come largest first, then by keeper path.
    """
    key = keeper_key(keep)
    marked = set(not_duplicates)
    chosen = set(keep_marks)
    edges: dict[int, dict[int, float]] = defaultdict(dict)
    for a, b, similarity, exact in pairs:
        if a not in candidates or b not in candidates or a == b:
            continue
        if not exact and similarity < min_similarity:
            continue
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
        pool = [candidates[n] for n in part]
        pool = [c for c in pool if not c.outside] or pool
        user = [c for c in pool if c.hash in chosen]
        keeper = min(user or pool, key=key)
        linked = edges[keeper.id]
        near = sorted(((n, linked[n]) for n in part if n in linked), key=lambda m: (-m[1], m[0]))
        members = [(keeper.id, 1.0), *near]
        if len(members) >= 2:
            plans.append(GroupPlan(keeper.id, "user" if user else "policy", tuple(members)))
        rest = [n for n in part if n != keeper.id and n not in linked]
        pending.extend(_components(rest, edges))
    plans.sort(key=lambda g: (-len(g.members), candidates[g.keep].path))
    return plans
