"""Landing URL templates: what a store may register as the target of its product links.

The tracker answers a click with ``302 Location: <template with the product id>``, so a
template is checked once, when the store is created: an absolute ``http(s)`` URL with a host,
printable ASCII only (no header can be split, no character needs encoding in ``Location``),
at most one ``{product_id}`` placeholder, in the path or the query (a product id can then
never change the host the buyer lands on), and no other brace (the tracker fills the
template with :meth:`str.format`).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

PLACEHOLDER: Final = "{product_id}"


def landing_template_problem(template: str) -> str | None:
    """Why ``template`` may not be a store's landing URL template, or None when it may."""
    if not template.isascii() or not template.isprintable() or " " in template:
        return "only printable ASCII without spaces (percent-encode the rest, punycode a host)"
    if template.count(PLACEHOLDER) > 1:
        return f"at most one {PLACEHOLDER}"
    if "{" in template.replace(PLACEHOLDER, "") or "}" in template.replace(PLACEHOLDER, ""):
        return f"no brace other than {PLACEHOLDER}"
    problem = http_url_problem(template)
    if problem is not None:
        return problem
    parts = urlsplit(template)
    if PLACEHOLDER in parts.netloc or PLACEHOLDER in parts.fragment:
        return f"{PLACEHOLDER} may stand only in the path or the query"
    return None


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute ``http(s)`` URL with a host, a valid port and no user
    name or password, or None when it is (the checks a landing template and a webhook
    endpoint share)."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return "not a URL (a bad host or port)"
    if parts.scheme.lower() not in ("http", "https"):
        return "http or https only"
    if not parts.hostname:
        return "a host is needed"
    if parts.username is not None or parts.password is not None:
        return "no user name or password in the URL"
    if not port_ok:
        return "not a URL (a bad host or port)"
    return None
