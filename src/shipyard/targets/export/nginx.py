"""The nginx of a Kubernetes pod: in front of the app server, serving the static files and
uploads itself, as on a host. Pure: a config from the spec."""

from __future__ import annotations

from pathlib import PurePosixPath

from shipyard.host.render import UPSTREAM_KEEPALIVE, StaticLocation
from shipyard.spec.model import Spec
from shipyard.targets.export import image

PORT = 8080  # the unprivileged nginx image's; no root needed to bind it
# The image run beside the app: nginx.org's, as a user that is not root.
IMAGE = "docker.io/nginxinc/nginx-unprivileged:1.27-alpine"
STATIC = PurePosixPath("/static")  # the release's static/, copied here from the app's image
# Django's default STATIC_URL: collectstatic's output is served there.
DJANGO_STATIC_URL = "/static/"


def static_dir_name(index: int, directory: str) -> str:
    """The name of a [static] directory in a release's static/ (build/artifact.py)."""
    return f"{index}-{PurePosixPath(directory).name}"


def locations(spec: Spec) -> list[StaticLocation]:
    """What the pod's nginx serves itself, longest prefix first: the spec's static
    directories, a Django project's collected files and its uploads."""
    found = [
        StaticLocation(_slash(prefix), f"{STATIC / static_dir_name(i, d)}/")
        for i, (prefix, d) in enumerate(sorted(spec.static.items()))
    ]
    if spec.django is not None:
        taken = {loc.prefix for loc in found}
        if spec.django.collectstatic and DJANGO_STATIC_URL not in taken:
            found.append(StaticLocation(DJANGO_STATIC_URL, f"{STATIC}/django-static/"))
        found.append(StaticLocation(spec.django.media_url, f"{image.DATA}/media/", uploads=True))
    return sorted(found, key=lambda loc: -len(loc.prefix))


def needed(spec: Spec) -> bool:
    return bool(locations(spec))


def _slash(prefix: str) -> str:
    return prefix if prefix.endswith("/") else prefix + "/"


def nginx_conf(spec: Spec, app_port: int, mime_types: str = "/etc/nginx/mime.types") -> str:
    """nginx.conf of the pod's nginx: every path it writes is under /tmp (its root file
    system is read-only), its logs go to the container's output."""
    read_timeout = spec.server.timeout + 5
    if spec.server.type.serves != "wsgi":  # a WebSocket's silence, as on a host
        read_timeout = max(read_timeout, spec.server.websocket_timeout)
    static = "".join(_static_block(loc) for loc in locations(spec))
    temp = image.TMP
    return f"""\
# Managed by shipyard: nginx in front of {spec.name}'s app server, in its pod.
worker_processes 1;
pid {temp}/nginx.pid;
error_log /dev/stderr warn;
events {{ worker_connections 1024; }}
http {{
    include {mime_types};
    default_type application/octet-stream;
    sendfile on;
    server_tokens off;
    access_log /dev/stdout;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream app {{ server 127.0.0.1:{app_port}; keepalive {UPSTREAM_KEEPALIVE}; }}
    server {{
        listen {PORT};
        client_max_body_size 10m;
{static}        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout {read_timeout}s;
        }}
    }}
}}
"""


def _static_block(loc: StaticLocation) -> str:
    """As on a host (host/render/templates/site.conf.j2): never a hidden file or an editor
    leftover; a name with a content hash cached for good; uploads never run as a page."""
    lines = [
        f"        location {loc.prefix} {{",
        f"            alias {loc.directory};",
        "            expires 1h;",
        "            access_log off;",
        f'            location ~ "{loc.never_served}" {{ return 404; }}',
    ]
    if loc.hashed:
        lines.append(
            f'            location ~ "{loc.hashed}" {{ expires max; '
            'add_header Cache-Control "public, immutable"; }'
        )
    if loc.uploads:
        lines += [
            "            add_header X-Content-Type-Options nosniff always;",
            "            add_header Content-Security-Policy "
            "\"default-src 'none'; sandbox\" always;",
        ]
    return "\n".join([*lines, "        }", ""])
