"""The browser dashboard: `index.html` at `/`, its modules and vendored libraries under
`/dashboard/`, all served from the package (no Node, no build step).

The page is a single document with hash routing, so `/` is its only HTML. Its Content Security
Policy allows scripts from this origin only: even a bug that put data into markup could not run
it (the dashboard builds its DOM with textContent, and renders Markdown through DOMPurify).
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, Router, get
from litestar.static_files import create_static_files_router

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the link `agenttasks up` prints carries a token
    "Cache-Control": "no-cache",
}


@get("/", include_in_schema=False, media_type="text/html")
async def dashboard_index() -> Response[bytes]:
    """The dashboard's single page."""
    body = (DASHBOARD_DIR / "index.html").read_bytes()
    # Litestar appends the charset itself.
    return Response(body, media_type="text/html", headers=SECURITY_HEADERS)


dashboard = Router(
    path="/",
    route_handlers=[
        dashboard_index,
        create_static_files_router(
            path="/dashboard",
            directories=[DASHBOARD_DIR],
            name="dashboard",
            include_in_schema=False,
        ),
    ],
)
