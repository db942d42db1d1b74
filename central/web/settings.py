"""The page's options: an optional tile server for the map's background, and the CSP it implies.

A city that runs its own tile server names it in central's config::

    [web]
    tile_url = "https://tiles.city.example/{z}/{x}/{y}.png"
    tile_attribution = "© city of Example"

Without one the map shows the cabinets on a plain background: nothing is fetched from elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_TILE_URL_CHARS = 512
MAX_ATTRIBUTION_CHARS = 200
# Leaflet's URL template: {s} (subdomain), {z}, {x}, {y}, {r} (retina) and nothing else in braces.
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KNOWN = frozenset({"s", "z", "x", "y", "r"})
# Characters that could break out of the CSP header or the HTML attribute the URL travels in.
_UNSAFE = re.compile(r"[\s\"'<>;,\\`]")


def tile_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable tile URL template, or None when it is."""
    if len(url) > MAX_TILE_URL_CHARS:
        return f"longer than {MAX_TILE_URL_CHARS} characters"
    if _UNSAFE.search(url):
        return "holds spaces, quotes, '<', '>', ';', ',' or a backslash: write it URL-encoded"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL, e.g. https://tiles.city.example/{z}/{x}/{y}.png"
    host = parts.hostname
    if "{" in (host[4:] if host.startswith("{s}.") else host):
        return "only {s} may stand in the host name, as its first label ({s}.tiles.city.example)"
    if parts.username is not None or parts.password is not None:
        return "holds a user name or password: a tile server for the page must be public to its browsers"
    found = set(_PLACEHOLDER.findall(url))
    if not {"z", "x", "y"} <= found:
        return "expected the placeholders {z}, {x} and {y}"
    if unknown := sorted(found - _KNOWN):
        return f"unknown placeholder {{{unknown[0]}}}: Leaflet knows {{s}}, {{z}}, {{x}}, {{y}}, {{r}}"
    return None


def attribution_problem(text: str) -> str | None:
    if len(text) > MAX_ATTRIBUTION_CHARS:
        return f"longer than {MAX_ATTRIBUTION_CHARS} characters"
    if any(ord(c) < 32 for c in text):
        return "holds control characters"
    return None


@dataclass(frozen=True, slots=True)
class WebSettings:
    tile_url: str | None = None
    tile_attribution: str = ""

    def __post_init__(self) -> None:
        if self.tile_url is not None and (problem := tile_url_problem(self.tile_url)) is not None:
            raise ValueError(f"web tile_url: {problem}")
        if (problem := attribution_problem(self.tile_attribution)) is not None:
            raise ValueError(f"web tile_attribution: {problem}")

    @property
    def tile_origin(self) -> str | None:
        """What the CSP must allow images from: the tile server's origin ({s} as a wildcard)."""
        if self.tile_url is None:
            return None
        parts = urlsplit(self.tile_url)
        host = (parts.hostname or "").replace("{s}", "*")
        port = f":{parts.port}" if parts.port is not None else ""
        return f"{parts.scheme}://{host}{port}"
