"""The review page: a local web app to look through duplicate groups and clean them up.

>>> from lookalike.web import serve
>>> serve("photos.lookalike", port=8765)  # http://127.0.0.1:8765/ until Ctrl+C

Needs the `web` extra (`pip install 'lookalike[web]'`): FastAPI and uvicorn.
"""

from lookalike.web.app import create_app
from lookalike.web.review import Review, ReviewError
from lookalike.web.server import serve

__all__ = ["Review", "ReviewError", "create_app", "serve"]
