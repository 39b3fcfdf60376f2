from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from asgi_app import GREETING, app


@pytest.fixture
def client() -> TestClient:
    return TestClient(app)


def test_homepage_and_health(client: TestClient) -> None:
    assert client.get("/").text == GREETING
    assert client.get("/health").json() == {"status": "ok"}


def test_release_comes_from_shipyard_s_variable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_RELEASE", "abc123")
    assert client.get("/release").json() == {"release": "abc123"}
    monkeypatch.delenv("SHIPYARD_RELEASE")
    assert client.get("/release").json() == {"release": "dev"}


def test_websocket_echo(client: TestClient) -> None:
    with client.websocket_connect("/ws/echo") as ws:
        for text in ("hello", "", "ünïcode"):
            ws.send_text(text)
            assert ws.receive_text() == text


def test_websocket_tells_its_release_at_once_and_on_every_message(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_RELEASE", "r1")
    with client.websocket_connect("/ws/release") as ws:
        assert ws.receive_json() == {"release": "r1"}
        ws.send_text("ping")
        assert ws.receive_json() == {"release": "r1", "message": "ping"}


def test_an_unknown_websocket_path_is_refused(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws/nope"):
        pass
