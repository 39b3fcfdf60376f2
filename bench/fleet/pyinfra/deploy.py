"""The seed's steps as a pyinfra deploy, for bench/fleet_compare.py.

Hosts have no package index: the wheels (the app's, built here, and its dependencies) are
synced over, then installed offline.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.operations import files, pip, server

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
work = host.data.work
venv = f"{work}/venv"
nginx = f"nginx -p {work}/ -c {work}/nginx.conf -e {work}/error.log"
supervisorctl = f"{venv}/bin/supervisorctl -c {work}/supervisord.conf"

for directory in (work, f"{work}/logs", f"{work}/tmp"):
    files.directory(name=f"Directory {directory}", path=directory)
files.sync(name="Wheelhouse", src=host.data.wheelhouse, dest=f"{work}/wheelhouse")
pip.virtualenv(name="Virtualenv", path=venv, venv=True, python="/usr/bin/python3")
pip.packages(
    name="Dependencies",
    packages=["flask", "gunicorn", "supervisor"],
    virtualenv=venv,
    extra_install_args=f"--no-index --find-links {work}/wheelhouse",
)
server.shell(
    name="The app (same version number, new code)",
    commands=[
        f"{venv}/bin/pip install -q --no-index --no-deps --force-reinstall "
        f"{work}/wheelhouse/{host.data.app_wheel}"
    ],
)
files.template(
    name="Supervisor program",
    src=str(TEMPLATES / "supervisord.conf.j2"),
    dest=f"{work}/supervisord.conf",
    work=work,
    secret=host.data.secret,
)
files.template(
    name="Nginx site",
    src=str(TEMPLATES / "nginx.conf.j2"),
    dest=f"{work}/nginx.conf",
    work=work,
    addr=host.data.addr,
)
server.shell(
    name="Database",
    commands=[f"FLASKR_SECRET_KEY={host.data.secret} {venv}/bin/flask --app flaskr init-db"],
)
server.shell(
    name="Start or restart the app",
    commands=[
        f"if {supervisorctl} pid >/dev/null 2>&1; then {supervisorctl} restart flaskr; "
        f"else {venv}/bin/supervisord -c {work}/supervisord.conf; fi"
    ],
)
server.shell(
    name="Start or reload nginx",
    commands=[
        f"{nginx} -t -q && if [ -f {work}/nginx.pid ] && kill -0 $(cat {work}/nginx.pid) "
        f"2>/dev/null; then {nginx} -s reload; else {nginx}; fi"
    ],
)
