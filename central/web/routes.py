"""GET / (the page) and GET /static/... (its files), no token needed: they hold no data.

Every answer carries a strict Content-Security-Policy: scripts, styles and connections only from
central itself (no inline script or style, no other host), images from central and, when one is
configured, the tile server (and data: URLs, Leaflet's blank tile). The page's own files are
revalidated on each load (ETag, 304); the vendored libraries live under a versioned folder and are
cached for a year.
"""

from __future__ import annotations

import gzip
import hashlib
import html
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request, Response

from central.web.assets import Asset, StaticAssets
from central.web.settings import WebSettings

_STATE = "web_page"
INDEX = "index.html"
YEAR_S = 365 * 86_400


def content_security_policy(settings: WebSettings) -> str:
    # With tiles, Leaflet blanks a tile it drops with an empty GIF as a data: URL.
    tiles = (settings.tile_origin, "data:") if settings.tile_origin else ()
    images = " ".join(("'self'", *tiles))
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _index(assets: StaticAssets, settings: WebSettings) -> Asset:
    """index.html with the tile server's template and attribution in its meta tags."""
    template = assets.get(INDEX)
    if template is None:
        raise RuntimeError(f"the page's {INDEX} is missing from the package: reinstall cityedge")
    text = (
        template.body.decode()
        .replace("{{tile_url}}", html.escape(settings.tile_url or "", quote=True))
        .replace("{{tile_attribution}}", html.escape(settings.tile_attribution, quote=True))
    )
    body = text.encode()
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    return Asset(
        body=body,
        gzipped=packed if len(packed) < len(body) else None,
        content_type=template.content_type,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        immutable=False,
    )


@dataclass(frozen=True, slots=True)
class WebPage:
    assets: StaticAssets
    index: Asset
    headers: dict[str, str]


def install(app: FastAPI, settings: WebSettings) -> None:
    assets = StaticAssets()
    headers = {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    setattr(app.state, _STATE, WebPage(assets=assets, index=_index(assets, settings), headers=headers))
    app.include_router(router)


def _page(request: Request) -> WebPage:
    found = getattr(request.app.state, _STATE, None)
    if not isinstance(found, WebPage):
        raise RuntimeError("the web page is not installed: build the app with create_app")
    return found


def _answer(request: Request, page: WebPage, asset: Asset) -> Response:
    headers = dict(page.headers)
    headers["ETag"] = asset.etag
    headers["Cache-Control"] = f"public, max-age={YEAR_S}, immutable" if asset.immutable else "no-cache"
    if asset.gzipped is not None:
        headers["Vary"] = "Accept-Encoding"
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(
        b"" if request.method == "HEAD" else body,
        media_type=asset.content_type,
        headers={**headers, "Content-Length": str(len(body))},
    )


router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def index(request: Request) -> Response:
    page = _page(request)
    return _answer(request, page, page.index)


@router.api_route("/static/{name:path}", methods=["GET", "HEAD"])
async def static(name: str, request: Request) -> Response:
    page = _page(request)
    asset = page.assets.get(name) if name != INDEX else None
    if asset is None:
        return Response(
            f"no file {name[:100]!r} in the page's files\n",
            status_code=404,
            media_type="text/plain; charset=utf-8",
            headers=page.headers,
        )
    return _answer(request, page, asset)
