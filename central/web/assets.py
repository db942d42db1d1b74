"""The page's files, read once from ``static/``: what a request may get is what was shipped.

Each file is held in memory with its content type, a strong ETag (its SHA-256) and a gzip form
when that is smaller; a path that is not one of them is a 404 without touching the file system, so
no request can reach outside the folder. The folder is small (about 350 kB); it is bounded anyway.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
MAX_FILES = 200
MAX_TOTAL_BYTES = 8 * 1024 * 1024
# Versioned folders never change under one URL: a browser may keep them for a year.
IMMUTABLE_PREFIX = "vendor/"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
_COMPRESSIBLE = frozenset({".html", ".js", ".css", ".json", ".svg", ".txt", ".md"})


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # None when gzip would not make it smaller
    content_type: str
    etag: str
    immutable: bool


class StaticAssets:
    def __init__(self, folder: Path = STATIC_DIR) -> None:
        self._assets: dict[str, Asset] = {}
        total = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            content_type = _TYPES.get(path.suffix)
            if content_type is None or name == "vendor/SHA256SUMS":
                continue  # only files of a kind the page loads (and their licences) are served
            body = path.read_bytes()
            total += len(body)
            if len(self._assets) >= MAX_FILES or total > MAX_TOTAL_BYTES:
                raise RuntimeError(
                    f"{folder} holds more than {MAX_FILES} files or {MAX_TOTAL_BYTES} bytes: not the page"
                )
            packed = gzip.compress(body, compresslevel=9, mtime=0) if path.suffix in _COMPRESSIBLE else None
            self._assets[name] = Asset(
                body=body,
                gzipped=packed if packed is not None and len(packed) < len(body) else None,
                content_type=content_type,
                etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                immutable=name.startswith(IMMUTABLE_PREFIX),
            )

    def get(self, name: str) -> Asset | None:
        return self._assets.get(name)

    def names(self) -> list[str]:
        return sorted(self._assets)
