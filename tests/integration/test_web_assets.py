"""The operator page's files as central serves them: types, caching, a strict CSP, nothing else.

The page is checked as a browser would take it: every file index.html names is served, no markup
carries an inline script, style or handler (the CSP forbids them: they would silently not run), and
the page's own scripts name no other host. The vendored libraries are the ones their sums say.
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from central.store.auth_rows import Role
from central.web.assets import STATIC_DIR
from central.web.settings import WebSettings
from tests.integration.api_client import local_api

pytestmark = pytest.mark.integration


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"<{tag} {name}={value!r}>")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = "src" not in named
            if named.get("src"):
                self.urls.append(str(named["src"]))
        if tag == "link" and named.get("href"):
            self.urls.append(str(named["href"]))

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"<script>{data.strip()[:40]}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


async def test_the_page_and_its_files_are_served_with_a_strict_policy(tmp_path: Path) -> None:
    async with local_api(tmp_path / "central.db") as api, api.client() as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        csp = page.headers["content-security-policy"]
        assert csp.startswith("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';")
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-cache"
        parsed = _Page()
        parsed.feed(page.text)
        assert parsed.inline == [], parsed.inline
        assert len(parsed.urls) >= 8
        for url in parsed.urls:
            assert url.startswith("/static/"), url
            response = await client.get(url)
            assert response.status_code == 200, url
            assert response.headers["content-security-policy"] == csp
        types = {
            "/static/js/main.js": "text/javascript; charset=utf-8",
            "/static/app.css": "text/css; charset=utf-8",
            "/static/favicon.svg": "image/svg+xml",
        }
        for url, expected in types.items():
            assert (await client.get(url)).headers["content-type"] == expected
        vendor = await client.get("/static/vendor/leaflet-1.9.4/leaflet.js")
        assert vendor.headers["cache-control"] == "public, max-age=31536000, immutable"
        # Revalidation is a 304 without a body; gzip when the browser takes it.
        other = await client.get("/static/js/main.js", headers={"If-None-Match": '"another"'})
        assert other.status_code == 200
        main = await client.get("/static/js/main.js", headers={"Accept-Encoding": "gzip"})
        assert main.headers["content-encoding"] == "gzip" and main.headers["vary"] == "Accept-Encoding"
        cached = await client.get("/static/js/main.js", headers={"If-None-Match": main.headers["etag"]})
        assert cached.status_code == 304 and cached.content == b""
        head = await client.head("/")
        assert head.status_code == 200 and head.content == b""


async def test_nothing_but_the_shipped_files_is_served(tmp_path: Path) -> None:
    async with local_api(tmp_path / "central.db") as api, api.client() as client:
        for path in (
            "/static/../config.py",
            "/static/%2e%2e/config.py",
            "/static/..%2f..%2fcentral%2fconfig.py",
            "/static/vendor/SHA256SUMS",
            "/static/index.html",  # only at /, where its tile settings are filled in
            "/static/nothing.js",
            "/index.html",
        ):
            response = await client.get(path)
            assert response.status_code == 404, path
        # The page needs no token; the API still does.
        assert (await client.get("/api/v1/cabinets")).status_code == 401


def test_the_pages_own_scripts_name_no_other_host() -> None:
    for path in [*sorted((STATIC_DIR / "js").glob("*.js")), STATIC_DIR / "app.css"]:
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} names a URL"
        assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", text), (
            f"{path.name}: build elements with dom.h, not markup"
        )
        assert "localStorage.setItem('cityedge.token'" not in text


def test_the_vendored_libraries_match_their_sums() -> None:
    vendor = STATIC_DIR / "vendor"
    lines = (vendor / "SHA256SUMS").read_text().splitlines()
    assert len(lines) >= 8
    listed = set()
    for line in lines:
        digest, name = line.split(maxsplit=1)
        listed.add(name.removeprefix("./"))
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    on_disk = {p.relative_to(vendor).as_posix() for p in vendor.rglob("*") if p.is_file()}
    assert on_disk - listed == {"SHA256SUMS", "README.md"}
    for lib in ("leaflet-1.9.4", "leaflet.markercluster-1.5.3", "uplot-1.6.32"):
        assert any(n.startswith(f"{lib}/") and "LICEN" in n for n in listed), f"{lib} without its licence"


async def test_a_tile_server_is_named_in_the_page_and_its_policy(tmp_path: Path) -> None:
    web = WebSettings(tile_url="https://tiles.dijon.example/{z}/{x}/{y}.png", tile_attribution='<b>"x"</b>')
    async with local_api(tmp_path / "central.db", web=web) as api, api.client() as client:
        page = await client.get("/")
        assert "img-src 'self' https://tiles.dijon.example data:;" in page.headers["content-security-policy"]
        assert 'content="https://tiles.dijon.example/{z}/{x}/{y}.png"' in page.text
        assert 'content="&lt;b&gt;&quot;x&quot;&lt;/b&gt;"' in page.text


async def test_whoami_says_the_name_and_what_the_role_may_do(tmp_path: Path) -> None:
    async with local_api(tmp_path / "central.db") as api:
        roles = ((Role.VIEWER, False), (Role.OPERATOR, True), (Role.ADMIN, True), (Role.INSTALLER, False))
        for role, may in roles:
            async with api.client(role) as client:
                me = (await client.get("/api/v1/whoami")).json()
            assert me == {"name": f"{role.value}-1", "role": role.value, "may_command": may}
