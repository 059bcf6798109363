"""Static files, light and cached.

- Every ``url_for('static', filename=...)`` carries the file's version: ``?v=`` and the first 12
  hex digits of the SHA-256 of the bytes served (a ``url_defaults`` hook, so templates don't
  change). A request whose ``v`` is the file's current one is answered ``Cache-Control: public,
  max-age=31536000, immutable``: the browser never asks again, and a new version has a new URL.
- Any other request (no ``v``, or another one) gets the current file with ``no-cache``: the
  browser revalidates it each time (ETag, Last-Modified; 304 when unchanged). So during a deploy
  an old page asking for an old version gets the new file without keeping it for a year under
  the old address, and a new page whose request reaches a server still on the old version (a
  rolling deploy over several hosts) never has the old file pinned to the new address.
- JavaScript and CSS are minified (rjsmin, rcssmin; ``*.min.*`` files are left as they are) and
  text is compressed with brotli and gzip once per file version, in memory: the static folder is
  small (about 100 KB). The response is chosen from ``Accept-Encoding``, with ``Vary:
  Accept-Encoding``, and each encoding has its own ETag. The sources in ``static/`` stay readable.
- Built as a process starts (``warm``, from ``wsgi.py``: gunicorn's workers), else at the first
  ``url_for`` or request of each file (hashed) and of each encoding (compressed), then kept. In
  debug mode a changed file is noticed at once (its size and modification time are checked at
  each use); otherwise a new version needs a restart, as the code does.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
from dataclasses import dataclass, field
from typing import Any

import rcssmin
import rjsmin
from flask import Flask, abort, current_app, request
from werkzeug.datastructures import Accept
from werkzeug.security import safe_join
from werkzeug.wrappers import Response

try:  # (a dependency; gzip alone still works without it)
    import brotli
except ImportError:  # pragma: no cover
    brotli = None

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"  # stored, but revalidated before each use
# Text worth compressing (images other than SVG, fonts in woff2 and archives are compressed already).
COMPRESSIBLE = frozenset(
    {
        "text/css",
        "text/html",
        "text/plain",
        "text/markdown",
        "text/javascript",
        "application/javascript",
        "application/json",
        "application/manifest+json",
        "image/svg+xml",
        "image/x-icon",
    }
)


def choose_encoding(accepted: Accept, offered: tuple[str, ...] = ("br", "gzip")) -> str | None:
    """The content coding to answer with: the client's preferred one among ``offered`` (brotli on
    a tie), or None for the bytes as they are."""
    best, best_q = None, 0.0
    for coding in offered:
        if coding == "br" and brotli is None:
            continue
        q = accepted.quality(coding)
        if q > best_q:
            best, best_q = coding, q
    return best


def compress(data: bytes, coding: str, *, fast: bool = False) -> bytes:
    """``data`` in ``coding`` ("br" or "gzip"). ``fast``: for a response compressed as it is sent
    (a page), rather than once per file version."""
    if coding == "br":
        assert brotli is not None
        return bytes(brotli.compress(data, quality=5 if fast else 11))
    return gzip.compress(data, compresslevel=6 if fast else 9, mtime=0)


@dataclass
class Asset:
    """One static file as served: its bytes (minified), version, type and encoded forms."""

    body: bytes
    digest: str
    mimetype: str
    modified: float
    _encoded: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def compressible(self) -> bool:
        return self.mimetype in COMPRESSIBLE

    def encoded(self, coding: str) -> bytes | None:
        """The body in ``coding``, made once; None when that is no smaller (a tiny file)."""
        if coding not in self._encoded:
            data = compress(self.body, coding)
            self._encoded[coding] = data if len(data) < len(self.body) else None
        return self._encoded[coding]


def minify(name: str, data: bytes) -> bytes:
    if ".min." in name:
        return data
    if name.endswith(".js"):
        return bytes(rjsmin.jsmin(data, keep_bang_comments=True))
    if name.endswith(".css"):
        return bytes(rcssmin.cssmin(data, keep_bang_comments=True))
    return data


# Built assets, shared by every app in the process (the tests make hundreds of apps): by path,
# size and modification time, so a changed file is built afresh.
_built: dict[tuple[str, int, int], Asset] = {}


def build(path: str, stat: os.stat_result) -> Asset:
    key = (path, stat.st_size, stat.st_mtime_ns)
    asset = _built.get(key)
    if asset is None:
        with open(path, "rb") as f:
            body = minify(os.path.basename(path), f.read())
        mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        digest = hashlib.sha256(body).hexdigest()[:12]
        asset = _built[key] = Asset(body, digest, mimetype, stat.st_mtime)
    return asset


class Assets:
    """An app's static files by name (relative to its static folder)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._by_name: dict[str, Asset] = {}

    def get(self, filename: str) -> Asset | None:
        asset = self._by_name.get(filename)
        if asset is not None and not self.app.debug:
            return asset
        folder = self.app.static_folder
        path = safe_join(folder, filename) if folder else None
        if path is None:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if not os.path.isfile(path):
            return None
        asset = self._by_name[filename] = build(path, stat)
        return asset


def warm(app: Flask) -> None:
    """Build every static file and its encoded forms now (gunicorn's workers, as they start:
    about 0.3 s of CPU), rather than for the first visitors (brotli's best takes 70 ms for htmx)."""
    assets: Assets = app.extensions["chatbot.assets"]
    folder = app.static_folder
    if not folder:
        return
    for directory, _, files in os.walk(folder):
        for name in files:
            asset = assets.get(os.path.relpath(os.path.join(directory, name), folder))
            if asset is not None and asset.compressible:
                for coding in ("br", "gzip") if brotli is not None else ("gzip",):
                    asset.encoded(coding)


def _assets() -> Assets:
    assets: Assets = current_app.extensions["chatbot.assets"]
    return assets


def add_version(endpoint: str, values: dict[str, Any]) -> None:
    """``url_for('static', filename=f)`` -> ``/static/f?v=<version>``."""
    if endpoint != "static" or "v" in values or "filename" not in values:
        return
    asset = _assets().get(values["filename"])
    if asset is not None:
        values["v"] = asset.digest


def serve(filename: str) -> Response:
    """The static route: the file as minified, in the client's encoding, cached for a year when
    the URL names its current version."""
    asset = _assets().get(filename)
    if asset is None:
        abort(404)
    coding = choose_encoding(request.accept_encodings) if asset.compressible else None
    body = asset.encoded(coding) if coding else None
    if body is None:
        coding, body = None, asset.body
    response = Response(body, mimetype=asset.mimetype)
    if coding:
        response.content_encoding = coding
    if asset.compressible:
        response.vary.add("Accept-Encoding")
    response.set_etag(asset.digest + (f"-{coding}" if coding else ""))
    response.last_modified = asset.modified  # type: ignore[assignment]
    response.headers["Cache-Control"] = IMMUTABLE if request.args.get("v") == asset.digest else REVALIDATE
    # 304 for a matching If-None-Match / If-Modified-Since; 206 for a Range of these bytes (each
    # encoding is its own representation, with its own ETag, so a range of it is well defined).
    return response.make_conditional(request, accept_ranges=True, complete_length=len(body))


def init_app(app: Flask) -> None:
    app.extensions["chatbot.assets"] = Assets(app)
    app.url_defaults(add_version)
    if "static" in app.view_functions:
        app.view_functions["static"] = serve
