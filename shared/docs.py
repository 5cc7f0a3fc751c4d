"""``/docs`` without the internet: Swagger UI served from a Python package, not a CDN.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN, so on a network without internet
it is blank. The ``fastapi-offline`` package ships Swagger UI's bundle and stylesheet
(Swagger UI 5, which reads the OpenAPI 3.1 that FastAPI writes); each service serves them
under ``/docs/static``. Create the app with ``docs_url=None, redoc_url=None`` and call
:func:`install_docs`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Swagger UI's assets, as installed with the package (``swagger-ui-bundle.js``,
#: ``swagger-ui.css``, ``favicon.png``)
SWAGGER_ASSETS = Path(str(files("fastapi_offline") / "static"))
STATIC_URL = "/docs/static"
#: a ``<script>`` element without ``src``: Swagger UI's page starts the UI inline
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)


def page_policy(html: str) -> str:
    """The Content-Security-Policy of a generated page: this origin's files, and the page's
    own inline scripts by their SHA-256 (no other inline script can run), Swagger UI's
    inline styles, never framed (``frame-ancestors 'none'``)."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def with_policy(page: HTMLResponse) -> HTMLResponse:
    """``page`` with the policy of its own inline scripts (:func:`page_policy`)."""
    page.headers["Content-Security-Policy"] = page_policy(bytes(page.body).decode())
    return page


def service_app(title: str, lifespan: Any) -> FastAPI:
    """A service's FastAPI app (version 1) with its ``/docs`` served from local assets."""
    app = FastAPI(title=title, version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_docs(app)
    return app


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI over ``app.openapi_url``) with local assets only."""
    if app.docs_url is not None:
        raise ValueError("create the app with docs_url=None: install_docs serves /docs")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = "/docs/oauth2-redirect"
    app.mount(STATIC_URL, StaticFiles(directory=SWAGGER_ASSETS), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return with_policy(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=oauth2_redirect,
                swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
                swagger_favicon_url=f"{STATIC_URL}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return with_policy(get_swagger_ui_oauth2_redirect_html())
