"""Where things are in the app's container image, which `shipyard export container` builds
and `shipyard export kubernetes` runs: the release laid out as on a host, at one fixed place.
Pure: paths and numbers only."""

from __future__ import annotations

from pathlib import PurePosixPath

from shipyard.host.artifact import TREE

APP_DIR = PurePosixPath("/app")  # the release: the app, its server's config files, static/
VENV = APP_DIR / "venv"
STATIC = APP_DIR / "static"  # the release's static files, one directory per URL prefix
DATA = PurePosixPath("/data")  # what outlives a pod (a volume): shared/ on a host
TMP = PurePosixPath("/tmp")
PORT = 8000
UID = 10001  # the image's user: not root, and no user of the node's


def workdir(tree: bool) -> PurePosixPath:
    """Where the app's processes run: its copy of the source tree, or the release itself."""
    return APP_DIR / TREE if tree else APP_DIR


def instance_dir() -> PurePosixPath:
    """The venv's var/, where Flask keeps an installed package's instance folder."""
    return VENV / "var"
