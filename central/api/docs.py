"""/docs: Swagger UI from files shipped in the package, so that it works without the internet.

FastAPI's own /docs loads Swagger UI from a CDN (and its favicon from a web site): offline, or behind
a control room's firewall, the page stays blank. Here the page loads its script and stylesheet from
``central/api/swagger_ui`` (npm's ``swagger-ui-dist``, see its README), and names no outside address:
the favicon is empty and Swagger UI's online validator is off.

/docs and /openapi.json need no token: they describe the API and hold no data. "Authorize" on the
page takes a token, which Swagger UI then sends with each request tried from the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI_VERSION = "5.35.0"
ASSETS_DIR = Path(__file__).parent / "swagger_ui"
ASSETS_URL = "/docs/assets"
DOCS_URL = "/docs"


def install(app: FastAPI) -> None:
    """Serve /docs and its assets; ``app`` must be made with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="swagger-ui-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css?v={SWAGGER_UI_VERSION}",
            swagger_favicon_url="data:,",
            oauth2_redirect_url=None,
            # Swagger UI would otherwise send the schema to an online validator for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )
