"""Running the review page: bind a local address, say where it is, serve until stopped."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

from lookalike.web.app import create_app
from lookalike.web.guard import LOOPBACK_NAMES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """Host header names the page answers to when bound to `host` (None: any name).

    Bound to every interface (0.0.0.0, ::) the machine's names are not known, so any
    is accepted: binding there is an explicit choice to be reachable.
    """
    if host in ("0.0.0.0", "::", ""):
        return None
    return tuple(dict.fromkeys((*LOOPBACK_NAMES, host)))


def listen(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port). OSError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def page_url(sock: socket.socket) -> str:
    """The page's address for a socket made by `listen`."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(app: Any, sock: socket.socket) -> Any:
    """A uvicorn server for an app on a listening socket (`.run(sockets=[sock])`)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=64 * 1024,
        lifespan="off",
    )
    return uvicorn.Server(config)


def serve(
    index: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_ready: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Serve the review page of an index on host:port until interrupted (Ctrl+C).

    `on_ready(url)` is called once the address is bound (connections wait until the
    server answers). `options` go to `create_app` (quarantine_to, cache_dir, model).
    """
    app = create_app(index, hosts=allowed_hosts(host), **options)
    sock = listen(host, port)
    try:
        if on_ready:
            on_ready(page_url(sock))
        make_server(app, sock).run(sockets=[sock])
    finally:
        sock.close()
