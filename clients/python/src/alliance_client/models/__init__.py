"""Typed bodies of the three services' APIs, one module per service, generated from their
OpenAPI documents by ``python -m deploy.clientgen`` (never edited by hand)."""
