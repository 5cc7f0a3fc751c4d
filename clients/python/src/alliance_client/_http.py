"""One service's HTTP door: requests by route template, answers parsed into models, errors
raised as :class:`~alliance_client.errors.ApiError`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from alliance_client.errors import ApiError

T = TypeVar("T")
#: a service: its base URL (the client opens and closes its connection) or an open client
Target = str | httpx.AsyncClient
Params = Mapping[str, str | int | None]
DEFAULT_TIMEOUT_S = 30.0


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def parse(kind: type[T], response: httpx.Response) -> T:
    """The answer's JSON body as ``kind`` (a model, or ``list[Model]``, ``dict[str, str]`` …)."""
    value: T = _adapter(kind).validate_json(response.content)
    return value


def body_of(value: BaseModel | Mapping[str, Any]) -> Any:
    """A request body as JSON-ready data: a model with only the fields that were set (the
    server's defaults apply to the rest), decimals as strings, times in ISO 8601."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return _adapter(dict[str, Any]).dump_python(dict(value), mode="json")


class Door:
    """Requests to one service with fixed headers (the caller's credentials)."""

    def __init__(
        self, target: Target, headers: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.owned = isinstance(target, str)
        self.http = (
            httpx.AsyncClient(base_url=target, timeout=timeout)
            if isinstance(target, str)
            else target
        )
        self.headers = dict(headers)

    async def aclose(self) -> None:
        """Close the connection, when the door opened it."""
        if self.owned:
            await self.http.aclose()

    async def send(
        self,
        method: str,
        template: str,
        path: Mapping[str, str | int] | None = None,
        *,
        params: Params | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """``method`` on the route ``template`` (``/v1/stores/{store_id}/…``) with the path
        values percent-encoded; the answer, or :class:`ApiError` for a status ≥ 400."""
        url = template.format_map({k: quote(str(v), safe="") for k, v in (path or {}).items()})
        query = {k: v for k, v in (params or {}).items() if v is not None}
        response = await self.http.request(
            method,
            url,
            params=query or None,
            json=json,
            content=content,
            headers={**self.headers, **(headers or {})},
        )
        if response.status_code >= 400:
            await response.aread()
            raise ApiError.from_response(response)
        return response
