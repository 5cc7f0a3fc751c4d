"""What every service exports on ``/metrics``: the three apps built as in production (no
lifespan: nothing connects), each scraped once. Used by the metrics tests and by the tests of
the alert rules and the dashboard, which may only use names found here."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from shared.config import Settings

#: the sample names a family of each type shows in a scrape
_SAMPLES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def service_apps() -> dict[str, FastAPI]:
    from services.attribution.app import create_app as attribution_app
    from services.commission.app import create_app as commission_app
    from services.tracker.app import create_app as tracker_app

    return {
        "tracker": tracker_app(Settings()),
        "attribution": attribution_app(Settings()),
        "commission": commission_app(Settings(), consume=False),
    }


async def scrape(app: FastAPI, path: str = "/metrics") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc.test") as c:
        return await c.get(path)


async def families() -> dict[str, dict[str, str]]:
    """Per service: metric name (as in the scrape's ``# TYPE`` line) → type."""
    out: dict[str, dict[str, str]] = {}
    for service, app in service_apps().items():
        resp = await scrape(app)
        assert resp.status_code == 200, (service, resp.text)
        out[service] = {}
        for family in text_string_to_metric_families(resp.text):
            name = family.name + ("_total" if family.type == "counter" else "")
            out[service][name] = family.type
    return out


async def exported_samples() -> set[str]:
    """Every sample name any service can show (a counter's ``_total``, a histogram's
    ``_bucket``/``_count``/``_sum``, …): what a PromQL expression of ours may name."""
    names: set[str] = set()
    for per_service in (await families()).values():
        for name, kind in per_service.items():
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + suffix for suffix in _SAMPLES.get(kind, ("",)))
    return names


#: PromQL words that are not metric names
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, ranges and the
    label lists of ``by``/``without``/``on``/``ignoring`` left out; a word followed by ``(``
    is a function or an aggregation)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names: set[str] = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end() :].lstrip().startswith("(") or m.group().lower() in _KEYWORDS:
            continue
        names.add(m.group())
    return names
