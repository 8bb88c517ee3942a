"""The dashboard page: static files served by the query API itself, no build step.

The page at ``/`` is plain HTML, CSS and JavaScript in ``static/`` (uPlot vendored in
``static/vendor/``) and talks only to this API's JSON routes, with relative URLs, so it
also works behind a reverse proxy under a path prefix. A strict Content-Security-Policy
is possible because the page has no inline script or style.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The key lives in sessionStorage; a fresh page must never come from a shared cache.
    "Cache-Control": "no-cache",
}


def install_dashboard(app: FastAPI) -> None:
    """Serve ``index.html`` at ``/`` and the assets under ``/static``."""
    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=SECURITY_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
