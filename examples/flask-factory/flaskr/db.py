"""SQLite helpers: one connection per application context, plus the ``init-db`` command."""

from __future__ import annotations

import sqlite3
from importlib import resources

import click
from flask import Flask, current_app, g
from flask.cli import with_appcontext


def get_db() -> sqlite3.Connection:
    """Return the request's database connection, opening it on first use."""
    if "db" not in g:
        conn = sqlite3.connect(current_app.config["DATABASE"])
        conn.row_factory = sqlite3.Row
        g.db = conn
    db: sqlite3.Connection = g.db
    return db


def close_db(exc: BaseException | None = None) -> None:
    """Close the connection opened by :func:`get_db`, if any."""
    db: sqlite3.Connection | None = g.pop("db", None)
    if db is not None:
        db.close()


def init_db() -> None:
    """Create the tables that do not exist yet; existing data is kept."""
    schema = resources.files("flaskr").joinpath("schema.sql").read_text(encoding="utf-8")
    db = get_db()
    db.executescript(schema)
    db.commit()


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the database schema (idempotent: safe to run on every deploy)."""
    init_db()
    click.echo("Initialized the database.")


def init_app(app: Flask) -> None:
    """Register the teardown handler and the CLI command with ``app``."""
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
