"""Commands for the review page: serve."""

from __future__ import annotations

from pathlib import Path

import typer

from lookalike.cli._app import SETTINGS, app, existing, fail, stderr, stdout
from lookalike.errors import LookalikeError


@app.command()
def serve(
    index: Path = typer.Argument(..., help="Index made by `lookalike scan`."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free one)."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on. The default is reachable from this machine only.",
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Checkpoint the index was made with, for Grad-CAM overlays."
    ),
    quarantine_to: Path | None = typer.Option(
        None, "--quarantine-to", help="Folder for quarantined files (default: INDEX.quarantine)."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Folder for thumbnails (default: .INDEX.cache beside it)."
    ),
) -> None:
    """Open a local web page to review the duplicate groups of an index, until Ctrl+C.

    Look at groups side by side, compare a pair with Grad-CAM overlays, change keepers,
    mark files as not duplicates, and quarantine (and restore) duplicates.
    """
    try:
        from lookalike.web import serve as serve_page
        from lookalike.web.server import is_loopback
    except ImportError as exc:
        raise fail(
            f"the review page needs the web extra ({exc.name} is missing): "
            "pip install 'lookalike[web]'"
        ) from None
    existing(index, "index")

    def ready(url: str) -> None:
        stdout().print(f"Review page for {index}: {url}", markup=False)
        if not SETTINGS.quiet:
            stderr().print("Press Ctrl+C to stop.", markup=False)
        if not is_loopback(host):
            stderr().print(
                f"warning: listening on {host}: other machines can open the page and change "
                "the index",
                markup=False,
            )

    try:
        serve_page(
            index,
            host=host,
            port=port,
            on_ready=ready,
            model=model,
            quarantine_to=quarantine_to,
            cache_dir=cache_dir,
        )
    except LookalikeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass
