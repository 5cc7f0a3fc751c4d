"""MkDocs hook (mkdocs.yml, ``hooks:``): the OpenAPI documents of the three services, generated
at build time from each service's app factory, so the reference page renders what the code
serves and never a copy that drifts. Nothing connects: an app factory only wires its routes.

The documents are added to the build as generated files ``openapi/<service>.json``; the API
page (docs/api.md) renders each with Swagger UI (mkdocs-swagger-ui-tag, assets in the package),
after a table of the service's routes written in place of its ``<!-- routes: <service> -->``
marker (text the site's search finds, which Swagger UI's is not).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from services.attribution.app import create_app as attribution_app
from services.commission.app import create_app as commission_app
from services.tracker.app import create_app as tracker_app
from shared.config import Settings

FACTORIES: dict[str, Callable[[Settings], FastAPI]] = {
    "tracker": tracker_app,
    "attribution": attribution_app,
    "commission": commission_app,
}


def openapi_documents() -> dict[str, str]:
    """Each service's OpenAPI document as JSON text (development settings: nothing is served)."""
    settings = Settings(env="dev")
    return {
        name: json.dumps(factory(settings).openapi(), indent=1, sort_keys=True)
        for name, factory in FACTORIES.items()
    }


#: where docs/api.md wants a service's route table
MARKER = re.compile(r"<!-- routes: (\w+) -->")
#: the end of a description's first sentence ("e.g. a" goes on)
SENTENCE_END = re.compile(r"\.\s+(?=[A-Z`])")
METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def route_table(document: dict[str, Any]) -> str:
    """One row per operation: method, path, and the first sentence of what it does."""
    rows = ["| method | path | what |", "|---|---|---|"]
    for path, operations in document["paths"].items():
        for method in METHODS:
            if method not in operations:
                continue
            operation = operations[method]
            what = (operation.get("description") or "").strip().split("\n\n")[0]
            what = SENTENCE_END.split(" ".join(what.split()))[0] or operation.get("summary", "")
            what = what.replace("|", "\\|")
            rows.append(f"| `{method.upper()}` | `{path}` | {what} |")
    return "\n".join(rows)


_documents: dict[str, str] = {}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    _documents.clear()
    _documents.update(openapi_documents())
    for name, text in _documents.items():
        files.append(File.generated(config, f"openapi/{name}.json", content=text))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return MARKER.sub(lambda m: route_table(json.loads(_documents[m.group(1)])), markdown)
