"""flaskr: a tiny Flask guestbook built with an application factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure the application.

    Configuration comes from, in order of increasing precedence: built-in defaults
    (``SECRET_KEY`` from ``FLASKR_SECRET_KEY``), ``config.py`` in the instance folder, and
    ``test_config`` when one is given (the instance ``config.py`` is skipped then).

    The instance folder holds the SQLite database. It defaults to Flask's choice (next to
    the package, or ``<prefix>/var/flaskr-instance`` when installed); set the absolute path
    ``FLASKR_INSTANCE_PATH`` to keep it somewhere that outlives a release.
    """
    app = Flask(
        __name__,
        instance_path=os.environ.get("FLASKR_INSTANCE_PATH") or None,
        instance_relative_config=True,
    )
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("FLASKR_SECRET_KEY"),
        DATABASE=os.path.join(app.instance_path, "flaskr.sqlite"),
    )

    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.from_mapping(test_config)

    if not app.config["SECRET_KEY"]:
        if not app.config.get("TESTING"):
            raise RuntimeError(
                "SECRET_KEY is not set: export FLASKR_SECRET_KEY (or set SECRET_KEY in the "
                "instance folder's config.py)"
            )
        app.config["SECRET_KEY"] = "dev"

    os.makedirs(app.instance_path, exist_ok=True)

    from . import db, views

    db.init_app(app)
    app.register_blueprint(views.bp)

    return app
