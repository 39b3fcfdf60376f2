"""HTTP routes."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from .db import get_db

GREETING = "Hello from flaskr"

bp = Blueprint("views", __name__)


@bp.get("/")
def index() -> str:
    entries = get_db().execute("SELECT id, body, created FROM entry ORDER BY id DESC").fetchall()
    return render_template("index.html", greeting=GREETING, entries=entries)


@bp.post("/entries")
def create_entry() -> BaseResponse:
    body = request.form.get("body", "").strip()
    if not body:
        abort(400, description="The entry body must not be empty.")
    db = get_db()
    db.execute("INSERT INTO entry (body) VALUES (?)", (body,))
    db.commit()
    return redirect(url_for("views.index"))


@bp.get("/api/entries")
def api_entries() -> Response:
    rows = get_db().execute("SELECT id, body FROM entry ORDER BY id").fetchall()
    return jsonify([{"id": row["id"], "body": row["body"]} for row in rows])


@bp.get("/health")
def health() -> Response:
    get_db().execute("SELECT 1").fetchone()
    return jsonify(status="ok")


@bp.get("/version")
def version() -> Response:
    return Response(GREETING, mimetype="text/plain")
