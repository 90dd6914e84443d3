"""The page at ``/``: plain HTML, JS and CSS from gateway/ui/ (no build step), served with their
content types and a strict Content-Security-Policy: only this origin's own scripts, styles and API,
artifacts shown from ``blob:`` URLs, no inline code, no framing."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from schemas.enums import ErrorCode

from .errors import ApiError

router = APIRouter(include_in_schema=False)

#: what the page may load: its own files, its own API, and the blob: URLs it makes of fetched artifacts
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' blob:;"
    " media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: the page's files and their content types (nothing else under gateway/ui/ is served)
FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
         "style.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    if name not in FILES:
        raise ApiError(ErrorCode.NOT_FOUND, f"no page file {name!r}")
    body = resources.files(__package__).joinpath("ui", name).read_bytes()
    return Response(body, media_type=FILES[name], headers=SECURITY_HEADERS)


@router.get("/")
async def page() -> Response:
    return _file("index.html")


@router.get("/ui/{name}")
async def asset(name: str) -> Response:
    return _file(name)
