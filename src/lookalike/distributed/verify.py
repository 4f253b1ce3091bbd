"""Verification on a Ray cluster's workers: each chunk of candidate pairs split among actors.

The driver still chooses the pairs, orders them and stores each chunk as it is done
(`candidates.verify_pairs`), so a killed scan loses one chunk and resumes the same way;
only the matching itself (decode, keypoints, RANSAC, content checks) moves to the
workers. Each actor loads the model once, opens files by path (the workers must see the
same files as the driver, as they do for embedding) and keeps the keypoints of the
images it met last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from lookalike.candidates import KEYPOINT_CACHE, Matcher, drop_oldest, file_loader
from lookalike.distributed.cluster import DistributedError, require_ray
from lookalike.model import Model
from lookalike.verify import Keypoints, Matches


class _MatchPairs:
    """A Ray actor: the model, the file list and a bounded keypoint cache, kept between calls."""

    def __init__(self, model: list[Any], paths: list[Any], cache_size: int) -> None:
        import ray

        # References inside lists: Ray passes them unresolved, each actor fetches them once.
        self.model: Model = ray.get(model[0])
        self.load = file_loader(ray.get(paths[0]), self.model.verify)
        self.cache: dict[tuple[int, bool], Keypoints] = {}
        self.cache_size = cache_size

    def match(self, pairs: np.ndarray) -> Matches:
        found = self.model.match_counts(self.load, pairs, threads=1, cache=self.cache)
        drop_oldest(self.cache, 2 * self.cache_size)  # pairs come in local order
        return found


class RayMatcher:
    """`Matcher` on the cluster this process is connected to: `matcher(pairs)` splits the
    pairs into one contiguous slice per actor (pairs come in local order, so a slice's
    images repeat) and gathers the matches in the pairs' order.

    Use it as a context manager: the actors go on exit.
    """

    def __init__(
        self,
        paths: list[str],
        model: Model,
        *,
        actors: int | None = None,
        cache_size: int = KEYPOINT_CACHE,
    ) -> None:
        ray = require_ray()
        if not ray.is_initialized():
            raise DistributedError("not connected to Ray: call inside `with ray_cluster(...)`")
        count = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=1, max_restarts=2, max_task_retries=2)(_MatchPairs)
        model_ref, paths_ref = ray.put(model), ray.put(list(paths))
        per_actor = max(1, cache_size // count)
        self._ray = ray
        self._refs = (model_ref, paths_ref)  # held here, so a restarted actor finds them
        self.actors = [remote.remote([model_ref], [paths_ref], per_actor) for _ in range(count)]

    def __call__(self, pairs: np.ndarray) -> Matches:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if len(pairs) == 0:
            return Matches.of([])
        slices = [s for s in np.array_split(pairs, len(self.actors)) if len(s)]
        try:
            parts = self._ray.get(
                [a.match.remote(s) for a, s in zip(self.actors, slices, strict=False)]
            )
        except Exception as exc:  # Ray wraps worker failures in many types; one clear message
            raise DistributedError(f"verification on the cluster failed: {exc}") from exc
        return Matches(*(np.concatenate(field) for field in zip(*parts, strict=True)))

    def close(self) -> None:
        """Stop the actors."""
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []

    def __enter__(self) -> RayMatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def ray_matcher(paths: list[str], model: Model) -> Iterator[Matcher]:
    """A `RayMatcher` for `paths`, stopped on exit (the `verifier` a scan takes)."""
    with RayMatcher(paths, model) as matcher:
        yield matcher
