"""The app's pods: the web Deployment (the app server, and nginx when it has files to
serve), one Deployment per process, the release Job. Pure: dicts from the spec."""

from __future__ import annotations

import hashlib
import math
import shlex
from pathlib import PurePosixPath
from typing import Any

from shipyard.host.render import TcpAddress, server_command
from shipyard.spec.kubernetes import quantity_value
from shipyard.spec.model import Spec
from shipyard.targets.export import image, nginx

Manifest = dict[str, Any]

NGINX_CONF = "nginx.conf"
# Seconds a pod leaving the Service keeps serving: the endpoints' removal reaches every
# node's proxy and the Ingress controller a moment after the pod is told to stop.
DRAIN_SECONDS = 5
# A finished release Job is deleted after a day (its log with it).
JOB_TTL = 86400
MAX_WORKERS = 8
# The Host header of the kubelet's probes: one the app answers, whatever `domains` say
# (Django's ALLOWED_HOSTS has the local names).
PROBE_HOST = "localhost"


def needs_volume(spec: Spec) -> bool:
    """A volume outlives the pods for `persistent` directories and a Django project's
    uploads and data (its SQLite files)."""
    return bool(spec.persistent) or spec.django is not None


def labels(spec: Spec, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "shipyard",
    }


def selector(spec: Spec, component: str) -> dict[str, str]:
    return {k: v for k, v in labels(spec, component).items() if "managed-by" not in k}


def meta(spec: Spec, name: str, component: str) -> Manifest:
    return {"name": name, "labels": labels(spec, component)}


def web_workers(spec: Spec) -> int:
    """The app server's workers in one pod: the spec's, or 2 x the pod's CPU limit (what the
    pod may use, whatever the node has) + 1."""
    if spec.server.workers:
        return spec.server.workers
    cores = quantity_value(spec.kubernetes.resources.cpu_limit)
    return min(2 * math.ceil(cores) + 1, MAX_WORKERS)


class PodParts:
    """What every pod of the app shares: its image, environment, user and volumes."""

    def __init__(self, spec: Spec, image_ref: str, tree: bool, has_secrets: bool) -> None:
        self.spec = spec
        self.image = image_ref
        self.tree = tree
        self.has_secrets = has_secrets

    def env_from(self) -> list[Manifest]:
        found: list[Manifest] = [{"configMapRef": {"name": f"{self.spec.name}-env"}}]
        if self.has_secrets:  # the last source wins: a secret over a plain variable, as on hosts
            found.append({"secretRef": {"name": f"{self.spec.name}-secrets"}})
        return found

    def resources(self) -> Manifest:
        res = self.spec.kubernetes.resources
        return {
            "requests": {"cpu": res.cpu, "memory": res.memory},
            "limits": {"cpu": res.cpu_limit, "memory": res.memory_limit},
        }

    def container(self, name: str, argv: list[str]) -> Manifest:
        return {
            "name": name,
            "image": self.image,
            "command": argv,
            "workingDir": str(image.workdir(self.tree)),
            "envFrom": self.env_from(),
            "resources": self.resources(),
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": self.mounts(),
        }

    def mounts(self) -> list[Manifest]:
        """The writable paths of a read-only root: /tmp; the venv's var/ (Flask's instance
        folder); each persistent directory, on the app's volume as on a host's shared/."""
        workdir = image.workdir(self.tree)
        found: list[Manifest] = [{"name": "tmp", "mountPath": str(image.TMP)}]
        if not needs_volume(self.spec):
            return [*found, {"name": "var", "mountPath": str(image.instance_dir())}]
        found.append({"name": "data", "mountPath": str(image.instance_dir()), "subPath": "var"})
        for directory in self.spec.persistent:
            rel = PurePosixPath(directory).as_posix()
            found.append(
                {"name": "data", "mountPath": str(workdir / rel), "subPath": f"data/{rel}"}
            )
        if self.spec.django is not None:
            found.append({"name": "data", "mountPath": str(image.DATA)})
        return found

    def volumes(self) -> list[Manifest]:
        found: list[Manifest] = [{"name": "tmp", "emptyDir": {}}]
        if needs_volume(self.spec):
            claim = {"claimName": f"{self.spec.name}-data"}
            return [*found, {"name": "data", "persistentVolumeClaim": claim}]
        return [*found, {"name": "var", "emptyDir": {}}]

    def pod(self, containers: list[Manifest], grace: int, **extra: Any) -> Manifest:
        return {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": image.UID,
                "runAsGroup": image.UID,
                "fsGroup": image.UID,  # the volume's files belong to the app's group
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": grace,
            "containers": containers,
            "volumes": self.volumes(),
            **extra,
        }


def _grace(spec: Spec) -> int:
    """What a stopping pod gets: the drain, then the server's graceful timeout."""
    return DRAIN_SECONDS + spec.server.graceful_timeout + 5


def _probes(spec: Spec, port: str) -> dict[str, Manifest]:
    """Readiness and liveness on the spec's health path; a start-up probe gives a new pod
    the spec's healthcheck.timeout to answer first. A check with no path (any answer will
    do) is the port accepting connections: the kubelet counts only 200-399 as healthy."""
    check = spec.healthcheck
    if check.path is None and check.status is None:
        action: Manifest = {"tcpSocket": {"port": port}}
    else:
        action = {
            "httpGet": {
                "path": check.request_path,
                "port": port,
                "httpHeaders": [{"name": "Host", "value": PROBE_HOST}],
            }
        }
    period = 2
    return {
        "startupProbe": {
            **action,
            "periodSeconds": period,
            "failureThreshold": max(1, math.ceil(check.timeout / period)),
        },
        "readinessProbe": {**action, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**action, "periodSeconds": 10, "failureThreshold": 3},
    }


def web_deployment(spec: Spec, pod: PodParts) -> Manifest:
    bind = TcpAddress("0.0.0.0", spec.kubernetes.port)
    argv = server_command(spec, image.VENV, image.APP_DIR, bind, web_workers(spec))
    app = pod.container("web", list(argv))
    app["ports"] = [{"name": "app", "containerPort": spec.kubernetes.port}]
    # the pod stays in the Service's endpoints a moment after it is told to stop
    app["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(DRAIN_SECONDS)]}}}
    containers = [app]
    extra: dict[str, Any] = {}
    if nginx.needed(spec):
        containers.append(_nginx_container(spec))
        extra["initContainers"] = [_static_copy(pod)]
        pod_volumes = [
            {"name": "static", "emptyDir": {}},
            {"name": "nginx-tmp", "emptyDir": {}},
            {"name": "nginx", "configMap": {"name": f"{spec.name}-nginx"}},
        ]
    else:
        app["ports"][0]["name"] = "http"
        pod_volumes = []
    app.update(_probes(spec, "app" if nginx.needed(spec) else "http"))
    template = pod.pod(containers, _grace(spec), **extra)
    template["volumes"] += pod_volumes
    body: Manifest = {
        "selector": {"matchLabels": selector(spec, "web")},
        "strategy": {
            "type": "RollingUpdate",
            # a new pod is ready before an old one goes: never fewer than asked for
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "minReadySeconds": 2,
        "revisionHistoryLimit": spec.keep,  # what `kubectl rollout undo` can go back to
        "template": {"metadata": {"labels": labels(spec, "web")}, "spec": template},
    }
    if spec.kubernetes.autoscale is None:  # else the autoscaler owns the count
        body = {"replicas": spec.kubernetes.replicas, **body}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(spec, spec.name, "web"),
        "spec": body,
    }


def _nginx_container(spec: Spec) -> Manifest:
    """nginx in front of the app server: static files, uploads, the same limits as a host's."""
    mounts: list[Manifest] = [
        {"name": "nginx-tmp", "mountPath": str(image.TMP)},
        {"name": "static", "mountPath": str(nginx.STATIC), "readOnly": True},
        {
            "name": "nginx",
            "mountPath": "/etc/nginx/nginx.conf",
            "subPath": NGINX_CONF,
            "readOnly": True,
        },
    ]
    if spec.django is not None:
        mounts.append({"name": "data", "mountPath": str(image.DATA), "readOnly": True})
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 5}
    return {
        "name": "nginx",
        "image": nginx.IMAGE,
        # nginx itself: the image's entry point would edit its config, which is read-only
        "command": ["nginx", "-g", "daemon off;"],
        "ports": [{"name": "http", "containerPort": nginx.PORT}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"cpu": "500m", "memory": "128Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "readinessProbe": probe,
        "livenessProbe": {**probe, "periodSeconds": 10},
        # out of the endpoints first, then a graceful quit (the TERM that follows the hook
        # would drop the requests in flight): nginx exits once they are answered
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", _NGINX_QUIT]}}},
        "volumeMounts": mounts,
    }


_NGINX_QUIT = (
    f"sleep {DRAIN_SECONDS}; nginx -s quit; while [ -e {image.TMP}/nginx.pid ]; do sleep 1; done"
)


def _static_copy(pod: PodParts) -> Manifest:
    """Copies the release's static files from the app's image to nginx's volume."""
    copy = ["cp", "-R", f"{image.STATIC}/.", f"{nginx.STATIC}/"]
    container = pod.container("static", copy)
    container["volumeMounts"] = [{"name": "static", "mountPath": str(nginx.STATIC)}]
    del container["envFrom"]
    container["resources"] = {
        "requests": {"cpu": "50m", "memory": "32Mi"},
        "limits": {"cpu": "500m", "memory": "128Mi"},
    }
    return container


def process_deployment(
    spec: Spec, pod: PodParts, name: str, argv: list[str], count: int, startsecs: int
) -> Manifest:
    """A process of the spec (a queue worker, say): a Deployment of its own, `count` pods."""
    component = f"process-{dns(name)}"
    container = pod.container(dns(name), argv)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(spec, f"{spec.name}-{dns(name)}", component),
        "spec": {
            "replicas": count,
            "selector": {"matchLabels": selector(spec, component)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            # up this long counts as started, as `startsecs` on a host
            "minReadySeconds": startsecs,
            "revisionHistoryLimit": spec.keep,
            "template": {
                "metadata": {"labels": labels(spec, component)},
                "spec": pod.pod([container], spec.server.graceful_timeout + 5),
            },
        },
    }


def release_job_name(spec: Spec, image_ref: str) -> str:
    """One Job per image: applying the same image again leaves its finished Job be, a new
    image (a new release) runs the command again."""
    digest = hashlib.sha256(image_ref.encode()).hexdigest()[:10]
    return f"{spec.name}-release-{digest}"


def release_job(spec: Spec, pod: PodParts, image_ref: str) -> Manifest:
    container = pod.container("release", shlex.split(spec.release))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(spec, release_job_name(spec, image_ref), "release"),
        "spec": {
            "backoffLimit": 0,  # a failed migration fails the release, as on a host
            "ttlSecondsAfterFinished": JOB_TTL,
            "template": {
                "metadata": {"labels": labels(spec, "release")},
                "spec": pod.pod([container], spec.server.graceful_timeout, restartPolicy="Never"),
            },
        },
    }


def dns(name: str) -> str:
    """A process name as a DNS label (Kubernetes names allow no '_')."""
    return name.replace("_", "-")
