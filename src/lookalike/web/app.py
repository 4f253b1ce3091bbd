"""The review page's FastAPI app: the page, its JSON API and its pictures.

Files are addressed by their id in the index only, never by a path from the client.
Reads are GETs; every change is a POST with a small JSON body, checked by `Guard`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

from lookalike import __version__
from lookalike.index import StoreFault, describe_fault
from lookalike.io import SPACE_ADVICE
from lookalike.model import Model
from lookalike.records import FileError, Quarantine
from lookalike.report import quarantine_payload
from lookalike.web.guard import LOOPBACK_NAMES, MAX_BODY, Guard
from lookalike.web.pictures import Pictures, Refused
from lookalike.web.review import Review, ReviewError

HERE = Path(__file__).parent
PAGE_SIZE = 25
"""Groups per page by default."""
MAX_PAGE_SIZE = 100
"""Most groups one request may ask for."""
MAX_SELECTION = 10_000
"""Most files one quarantine request may name."""

FileId = Annotated[int, PathParam(ge=1, le=2**62)]
QueryId = Annotated[int, Query(ge=1, le=2**62)]
_CACHE_PICTURE = {"cache-control": "private, max-age=86400"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeeperChoice(_Body):
    file: int = Field(ge=1, le=2**62)


class NotDuplicate(_Body):
    a: int = Field(ge=1, le=2**62)
    b: int = Field(ge=1, le=2**62)


class QuarantineChoice(_Body):
    files: list[int] = Field(min_length=1, max_length=MAX_SELECTION)
    min_similarity: float | None = Field(default=None, ge=0.0, le=1.0)


class QuarantineConfirm(_Body):
    preview: str = Field(min_length=1, max_length=64)


class RestoreChoice(_Body):
    manifest: str = Field(min_length=1, max_length=255)


def default_cache_dir(index: Path) -> Path:
    """Hidden, beside the index: scans skip hidden folders, so thumbnails are never scanned."""
    return index.parent / f".{index.name}.cache"


def default_quarantine_dir(index: Path) -> Path:
    """Beside the index: `<index>.quarantine`."""
    return index.parent / f"{index.name}.quarantine"


def _errors(entries: Collection[FileError]) -> list[dict[str, str]]:
    return [{"path": str(e.path), "reason": e.reason} for e in entries]


def _outcome(outcome: Quarantine) -> dict[str, Any]:
    payload = quarantine_payload(outcome)
    payload["manifest"] = outcome.manifest.name if outcome.manifest else None
    return payload


def create_app(
    index: str | os.PathLike[str],
    *,
    quarantine_to: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    model: Model | str | os.PathLike[str] | None = None,
    token: str | None = None,
    hosts: Collection[str] | None = LOOPBACK_NAMES,
    max_body: int = MAX_BODY,
) -> Guard:
    """The review page for an index, as an ASGI app (serve it with uvicorn).

    `quarantine_to` defaults to `<index>.quarantine` and `cache_dir` (thumbnails,
    previews, overlays) to the hidden `.<index>.cache`, both beside the index; `model`
    (for Grad-CAM) to the bundled one. `token` (default: a new random one) must come
    with every change; `hosts` are the names the Host header may carry (None: any).
    Raises ReviewError for an index without a finished scan.
    """
    index = Path(index)
    review = Review(
        index,
        quarantine_to=quarantine_to or default_quarantine_dir(index),
        model=model,
    )
    pictures = Pictures(Path(cache_dir) if cache_dir else default_cache_dir(index))
    token = token or secrets.token_urlsafe(32)
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    api = FastAPI(title="lookalike review", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.review = review
    api.state.token = token
    api.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @api.exception_handler(ReviewError)
    async def review_error(_request: Request, exc: ReviewError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @api.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @api.exception_handler(OSError)
    @api.exception_handler(StoreFault)
    async def machine(_request: Request, exc: Exception) -> JSONResponse:
        # A full or read-only disk: the action fails with a message, the page keeps running.
        fault = describe_fault(exc)
        if fault is None:
            raise exc
        path, reason, advice = fault
        status = 507 if advice == SPACE_ADVICE else 409
        return JSONResponse({"detail": f"{path}: {reason}; {advice}"}, status_code=status)

    @api.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and why only: echoing the input back fails on NaN or Infinity (a 500).
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @api.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        cut = review.cutoffs()
        html = templates.get_template("review.html").render(
            token=token,
            index=index.name,
            cut=cut,
            quarantine_to=str(review.quarantine_to),
            page_size=PAGE_SIZE,
            version=__version__,
        )
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    @api.get("/api/summary")
    def summary() -> dict[str, Any]:
        return {
            "index": str(index),
            "cutoffs": asdict(review.cutoffs()),
            "quarantine_to": str(review.quarantine_to),
            "max_page_size": MAX_PAGE_SIZE,
        }

    @api.get("/api/groups")
    def groups(
        min_similarity: float | None = Query(default=None, ge=0.0, le=1.0),
        offset: int = Query(default=0, ge=0, le=2**31),
        limit: int = Query(default=PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    ) -> dict[str, Any]:
        return asdict(review.groups(min_similarity, offset, limit))

    @api.get("/api/shots")
    def shots(
        offset: int = Query(default=0, ge=0, le=2**31),
        limit: int = Query(default=PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    ) -> dict[str, Any]:
        return asdict(review.shots(offset, limit))

    @api.get("/api/pair")
    def pair(a: QueryId, b: QueryId) -> dict[str, Any]:
        return asdict(review.pair(a, b))

    @api.post("/api/keeper")
    def keeper(choice: KeeperChoice) -> dict[str, Any]:
        review.set_keeper(choice.file)
        return {"keeper": choice.file}

    @api.post("/api/not-duplicate")
    def not_duplicate(choice: NotDuplicate) -> dict[str, Any]:
        review.mark_not_duplicate(choice.a, choice.b)
        return {"a": choice.a, "b": choice.b}

    @api.post("/api/not-duplicate/undo")
    def undo_not_duplicate(choice: NotDuplicate) -> dict[str, Any]:
        removed = review.unmark_not_duplicate(choice.a, choice.b)
        return {"a": choice.a, "b": choice.b, "removed": removed}

    @api.post("/api/quarantine/preview")
    def quarantine_preview(choice: QuarantineChoice) -> dict[str, Any]:
        preview = review.preview_quarantine(choice.files, choice.min_similarity)
        return {
            "preview": preview.preview,
            **_outcome(preview.outcome),
            "refused": _errors(preview.refused),
            "to": str(review.quarantine_to),
        }

    @api.post("/api/quarantine")
    def quarantine(confirm: QuarantineConfirm) -> dict[str, Any]:
        return _outcome(review.quarantine(confirm.preview))

    @api.get("/api/manifests")
    def manifests() -> dict[str, Any]:
        return {
            "folder": str(review.quarantine_to),
            "manifests": [asdict(m) for m in review.manifests()],
        }

    @api.post("/api/restore")
    def restore(choice: RestoreChoice) -> dict[str, Any]:
        return _outcome(review.restore(choice.manifest))

    @api.get("/thumb/{file_id}")
    def thumbnail(file_id: FileId) -> FileResponse:
        path = pictures.thumbnail(review.source(file_id))
        return FileResponse(path, media_type="image/jpeg", headers=_CACHE_PICTURE)

    @api.get("/image/{file_id}")
    def image(file_id: FileId) -> FileResponse:
        path = pictures.preview(review.source(file_id))
        return FileResponse(path, media_type="image/jpeg", headers=_CACHE_PICTURE)

    @api.get("/overlay/{a}/{b}/{side}")
    def overlay(
        a: FileId, b: FileId, side: Annotated[str, PathParam(pattern="^[abm]$")]
    ) -> FileResponse:
        model, key = review.overlay_model()
        made = pictures.overlays(review.source(a), review.source(b), model, key)
        path = made["abm".index(side)]
        return FileResponse(path, media_type="image/jpeg", headers=_CACHE_PICTURE)

    return Guard(api, token, hosts=hosts, max_body=max_body)
