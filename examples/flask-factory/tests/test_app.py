from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from flaskr import create_app
from flaskr.db import get_db
from flaskr.views import GREETING


def test_index_renders_greeting(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert GREETING in html
    assert "No entries yet." in html
    assert "/static/style.css" in html
    assert "/static/app.js" in html


def test_static_files_are_served(client: FlaskClient) -> None:
    for name in ("style.css", "app.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        response.close()


def test_post_entry_persists_and_shows(client: FlaskClient, app: Flask) -> None:
    response = client.post("/entries", data={"body": "first <entry>"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"

    html = client.get("/").get_data(as_text=True)
    assert "first &lt;entry&gt;" in html

    with app.app_context():
        rows = get_db().execute("SELECT body FROM entry").fetchall()
    assert [row["body"] for row in rows] == ["first <entry>"]


@pytest.mark.parametrize("data", [{}, {"body": ""}, {"body": "   "}])
def test_empty_post_is_rejected(client: FlaskClient, app: Flask, data: dict[str, str]) -> None:
    assert client.post("/entries", data=data).status_code == 400
    with app.app_context():
        assert get_db().execute("SELECT COUNT(*) FROM entry").fetchone()[0] == 0


def test_health(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_api_entries(client: FlaskClient) -> None:
    assert client.get("/api/entries").get_json() == []
    client.post("/entries", data={"body": "one"})
    client.post("/entries", data={"body": "two"})
    response = client.get("/api/entries")
    assert response.status_code == 200
    assert response.get_json() == [{"id": 1, "body": "one"}, {"id": 2, "body": "two"}]


def test_version_is_plain_greeting(client: FlaskClient) -> None:
    response = client.get("/version")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == GREETING


def test_init_db_command_is_idempotent(runner: FlaskCliRunner, app: Flask) -> None:
    with app.app_context():
        db = get_db()
        db.execute("INSERT INTO entry (body) VALUES ('kept')")
        db.commit()

    for _ in range(2):
        result = runner.invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "Initialized the database." in result.output

    with sqlite3.connect(app.config["DATABASE"]) as conn:
        assert conn.execute("SELECT body FROM entry").fetchall() == [("kept",)]


def test_init_db_command_creates_schema(tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite"
    app = create_app({"TESTING": True, "DATABASE": str(database)})
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(database) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert ("entry",) in tables


def test_secret_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASKR_SECRET_KEY", "s3cret")
    assert create_app().config["SECRET_KEY"] == "s3cret"


def test_instance_folder_holds_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASKR_SECRET_KEY", "s3cret")
    app = create_app()
    assert app.instance_path == str(tmp_path / "instance")
    assert app.config["DATABASE"] == str(tmp_path / "instance" / "flaskr.sqlite")
    assert (tmp_path / "instance").is_dir()


def test_secret_key_required_outside_testing() -> None:
    with pytest.raises(RuntimeError, match="FLASKR_SECRET_KEY"):
        create_app()
    assert create_app({"TESTING": True}).config["SECRET_KEY"] == "dev"
