"""Ray itself: importing it with a clear error, and joining or starting a cluster."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from types import ModuleType

from lookalike.errors import LookalikeError


class DistributedError(LookalikeError):
    """Ray is missing, a cluster cannot be reached, or a distributed job failed."""


def require_ray() -> ModuleType:
    """The `ray` module, or DistributedError saying how to install it."""
    try:
        import ray
        import ray.data  # a separate extra of ray: `ray[data]`
    except ImportError:
        raise DistributedError(
            "the ray engine needs Ray Data: pip install 'lookalike[ray]'"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast on a `host:port` nobody listens on (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", "ray://...": left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise DistributedError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
            "start it with `ray start --head` or check the address"
        ) from None


@contextlib.contextmanager
def ray_cluster(address: str | None = None, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Use the Ray instance already running in this process, or connect to one.

    Without `address` a local Ray instance is started (on `num_cpus` cores, default
    all) and stopped again on exit; with one (`host:port`, `auto`, `ray://host:10001`)
    the existing cluster is joined and left running. A `host:port` nobody listens on
    is a DistributedError at once.
    """
    ray = require_ray()
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"reach the Ray cluster at {address}" if address else "start Ray here"
        raise DistributedError(f"cannot {where}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
