"""The web page to try the model, at `/ui`: static HTML/CSS/JS from `serving/ui/` (no build
step, no framework, no CDN), served by Starlette's `StaticFiles` (a BentoML dependency). The
page calls `POST /classify` like any other client; there is no second inference path.

`app()` is mounted at `/` with `@bentoml.asgi_app`: BentoML mounts it "passively", so it only
takes the requests its own routes match (`/ui`, a redirect to `/ui/`, and `/ui/...`) and every
other path still reaches BentoML. `DESCRIPTION` is the service's description, which BentoML's
index page at `/` shows as its header, with the link to the page (from a built bento, its
README; from source, through `serving.adjustments`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from serving import routes

UI_DIR = Path(__file__).with_name("ui")
PATH = routes.UI

DESCRIPTION = """\
Labels English review texts by sentiment with a fine-tuned transformer (ONNX Runtime).

**[Try it in the browser: the web page at /ui](ui/)**, or call `POST /classify` below with
`{"texts": ["...", ...]}`. Probes: `/livez`, `/readyz`; Prometheus metrics: `/metrics`.
"""

# Everything the page loads comes from the service itself; nothing may frame it.
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),  # revalidate (ETag): a new image's page shows at once
]


class _WithHeaders:
    """ASGI wrapper that adds `HEADERS` to every answer of the app it wraps."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _to_page(_request: Any) -> RedirectResponse:
    # Relative, so it holds behind a proxy or a path prefix (Starlette's own slash redirect
    # is an absolute http:// URL).
    return RedirectResponse("ui/", status_code=308)


def app() -> Starlette:
    """`/ui` -> 308 to `/ui/`; `/ui/` -> index.html; `/ui/<file>` -> that file (GET, HEAD)."""
    static = StaticFiles(directory=UI_DIR, html=True)
    return Starlette(
        routes=[
            Route(PATH, _to_page, methods=["GET", "HEAD"]),
            Mount(PATH, app=_WithHeaders(static), name="ui"),
        ]
    )


def files() -> dict[str, int]:
    """The page's files and their sizes in bytes."""
    return {p.name: p.stat().st_size for p in sorted(UI_DIR.iterdir()) if p.is_file()}
