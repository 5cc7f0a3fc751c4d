"""MkDocs hook (mkdocs.yml, ``hooks:``): the OpenAPI documents of the three services, generated
at build time from each service's app factory, so the reference page renders what the code
serves and never a copy that drifts. Nothing connects: an app factory only wires its routes.

The documents are added to the build as generated files ``openapi/<service>.json``; the API
page (docs/api.md) renders each with Swagger UI (mkdocs-swagger-ui-tag, assets in the package).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import FastAPI
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

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


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for name, text in openapi_documents().items():
        files.append(File.generated(config, f"openapi/{name}.json", content=text))
    return files
