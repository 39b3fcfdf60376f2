"""The seed's steps as a pyinfra (v3) deploy, for bench/fleet_compare.py.

The inventory (written per run) gives each host `work`, `addr` and `secret`, and every host
`wheels_url`, `wheels_host` and `app_wheel`. Hosts have no package index: pip installs
offline from the wheelhouse this machine serves on the fleet's bridge (plain HTTP on a
private link): the dependencies' wheels, built once, and the app's wheel, built before each
run.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.operations import files, pip, server

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
work: str = host.data.work
venv = f"{work}/venv"
pip_offline = (
    f"--no-index --find-links {host.data.wheels_url}/ --trusted-host {host.data.wheels_host} "
    f"--cache-dir {work}/pip-cache --disable-pip-version-check"
)
nginx = f"nginx -p {work}/ -c {work}/nginx.conf -e {work}/error.log"
supervisorctl = f"{venv}/bin/supervisorctl -c {work}/supervisord.conf"

for directory in (work, f"{work}/logs", f"{work}/tmp"):
    files.directory(name=f"Directory {directory}", path=directory)
pip.virtualenv(name="Virtualenv", path=venv, venv=True, python="/usr/bin/python3")
pip.packages(
    name="gunicorn, supervisor and the app's dependencies",
    packages=["flask", "gunicorn", "supervisor"],
    virtualenv=venv,
    extra_install_args=pip_offline,
)
server.shell(
    name="The app (the same version number with new code, so reinstalled)",
    commands=[
        f"{venv}/bin/pip install -q {pip_offline} --no-deps --force-reinstall "
        f"{host.data.wheels_url}/{host.data.app_wheel}"
    ],
)
files.template(
    name="Supervisor program",
    src=str(TEMPLATES / "supervisord.conf.j2"),
    dest=f"{work}/supervisord.conf",
    mode="600",
    work=work,
    secret=host.data.secret,
)
files.template(
    name="Nginx site",
    src=str(TEMPLATES / "nginx.conf.j2"),
    dest=f"{work}/nginx.conf",
    mode="644",
    work=work,
    addr=host.data.addr,
)
server.shell(
    name="Database",
    commands=[f"FLASKR_SECRET_KEY={host.data.secret} {venv}/bin/flask --app flaskr init-db"],
)
server.shell(
    name="Start supervisord, or restart the app",
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
