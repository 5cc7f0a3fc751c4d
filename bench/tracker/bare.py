"""The baseline: a bare FastAPI redirect that does no I/O (same server, same options)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

app = FastAPI()


@app.get("/r/{code}")
async def follow(code: str) -> RedirectResponse:
    response = RedirectResponse(f"https://shop.example/item/p1?code={code}", status_code=302)
    response.set_cookie("alliance_vid", "v", max_age=31_536_000, httponly=True, samesite="lax")
    return response
