"""A small Starlette app: plain HTTP routes and two WebSocket routes.

`SHIPYARD_RELEASE` (set by shipyard for each release) tells which release answers, so a
client can see a deploy happen: an open WebSocket stays on the release it was opened on.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

GREETING = "hello from asgi-app"


def release() -> str:
    return os.environ.get("SHIPYARD_RELEASE", "dev")


async def homepage(request: Request) -> PlainTextResponse:
    return PlainTextResponse(GREETING)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def which_release(request: Request) -> JSONResponse:
    return JSONResponse({"release": release()})


async def echo(websocket: WebSocket) -> None:
    """Every text message comes back as it was sent."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


async def release_socket(websocket: WebSocket) -> None:
    """The release serving this connection, at once and in answer to every message."""
    await websocket.accept()
    await websocket.send_json({"release": release()})
    try:
        while True:
            message = await websocket.receive_text()
            await websocket.send_json({"release": release(), "message": message})
    except WebSocketDisconnect:
        pass


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/health", health),
        Route("/release", which_release),
        WebSocketRoute("/ws/echo", echo),
        WebSocketRoute("/ws/release", release_socket),
    ]
)
