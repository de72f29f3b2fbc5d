"""
The web page that runs the probes (SPEC §7: C{GET /} and C{GET /static/<name>}):
its files and the headers they are served with.
"""

from __future__ import annotations

import functools
from importlib import resources

#: The files under C{static/} that C{GET /static/<name>} serves, and their types.
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

#: The page loads only its own script and style sheet and talks only to its origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Headers of the page and its static files.
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@functools.cache
def static_file(name: str) -> tuple[bytes, str] | None:
    """
    The body and content type of the static file C{name}, or L{None} when
    C{name} is not one of L{STATIC_FILES} (so no other path can be reached).
    """
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return None
    body = resources.files(__package__).joinpath("static", name).read_bytes()
    return body, content_type
