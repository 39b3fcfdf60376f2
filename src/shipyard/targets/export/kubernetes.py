"""The Kubernetes export: a validated spec turned into manifests and a kustomize base.
Pure: dicts and texts from the spec, an image reference and the secrets' names."""

from __future__ import annotations

import hashlib
import math
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from shipyard.errors import SpecError
from shipyard.host.djangoapp import LOCAL_NAMES, WRAPPER_MODULE, allowed_hosts
from shipyard.host.render import TcpBind, bound_server_argv
from shipyard.spec.kubernetes import quantity_value
from shipyard.spec.model import Spec
from shipyard.targets.export import image, nginx

Manifest = dict[str, Any]

CONFIG_ENV = "config.env"
SECRET_ENV = "secret.env"
SECRET_EXAMPLE = "secret.env.example"
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


@dataclass(frozen=True)
class Export:
    """What `export kubernetes` writes: each file's name and text, and the secrets' file
    (its values, 0600) or, with none known, an example to fill."""

    files: dict[str, str]
    secret_file: str | None = None  # secret.env's text: KEY=value lines
    resources: list[str] = field(default_factory=list)  # the manifests kustomize applies


def render(spec: Spec, image_ref: str, tree: bool, secrets: dict[str, str] | None) -> Export:
    """The export of `spec` running `image_ref`; `tree`: the release is a source tree;
    `secrets`: every value the app's Secret holds, or None when they are unknown (then
    secret.env is for the user to write, and an example lists its names)."""
    check_exportable(spec)
    manifests = all_manifests(spec, image_ref, tree, has_secrets=bool(spec.secrets or secrets))
    files = {name: dump(manifest) for name, manifest in manifests.items()}
    files[CONFIG_ENV] = env_file(config_env(spec, tree))
    if nginx.needed(spec):
        files[NGINX_CONF] = nginx.nginx_conf(spec, spec.kubernetes.port)
    secret_text = None
    if secrets is not None:
        secret_text = env_file(secrets)
    elif spec.secrets:
        files[SECRET_EXAMPLE] = secret_example(spec)
    has_secrets = bool(spec.secrets or secrets)
    files["kustomization.yaml"] = dump(kustomization(spec, list(manifests), has_secrets))
    return Export(files, secret_text, list(manifests))


def all_manifests(spec: Spec, image_ref: str, tree: bool, has_secrets: bool) -> dict[str, Manifest]:
    """Each manifest by its file name, in the order kustomize lists them."""
    pod = _PodParts(spec, image_ref, tree, has_secrets)
    found: dict[str, Manifest] = {"deployment-web.yaml": web_deployment(spec, pod)}
    for name, process in sorted(spec.processes.items()):
        argv = shlex.split(process.command)
        found[f"deployment-{_dns(name)}.yaml"] = process_deployment(
            spec, pod, name, argv, process.count, process.startsecs
        )
    found["service.yaml"] = service(spec)
    found["ingress.yaml"] = ingress(spec)
    if spec.release:
        found["job-release.yaml"] = release_job(spec, pod, image_ref)
    if needs_volume(spec):
        found["pvc.yaml"] = volume_claim(spec)
    if spec.kubernetes.autoscale is not None:
        found["hpa.yaml"] = autoscaler(spec)
    return found


def check_exportable(spec: Spec) -> None:
    """Refuse what a pod cannot do as a host does: a persistent file (SQLite's, say) needs
    its directory writable, for its journal beside it, and the pod's root is read-only. A
    Django project's wrapped settings move SQLite files into the volume themselves."""
    lined = sorted(k for k, v in spec.env.items() if "\n" in v or "\r" in v)
    if lined:
        raise SpecError(
            f"env {', '.join(lined)} holds a line break, which a ConfigMap's env file "
            "(kustomize's configMapGenerator) cannot carry.",
            hint="Write the value on one line (join items with ',' or base64 it).",
        )
    wrapped = spec.django is not None and spec.django.wrap
    if spec.persistent_files and not wrapped:
        files = ", ".join(spec.persistent_files)
        raise SpecError(
            f"persistent_files ({files}) cannot be exported to Kubernetes: the pods' root "
            "file system is read-only, and a file such as a SQLite database needs its "
            "directory writable.",
            hint="Move the file into a directory listed in `persistent` (e.g. data/"
            f"{PurePosixPath(spec.persistent_files[0]).name}), which the export mounts "
            "from a volume; or use a database server.",
        )


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


def _selector(spec: Spec, component: str) -> dict[str, str]:
    return {k: v for k, v in labels(spec, component).items() if "managed-by" not in k}


def _meta(spec: Spec, name: str, component: str) -> Manifest:
    return {"name": name, "labels": labels(spec, component)}


def web_workers(spec: Spec) -> int:
    """The app server's workers in one pod: the spec's, or 2 x the pod's CPU limit (what the
    pod may use, whatever the node has) + 1."""
    if spec.server.workers:
        return spec.server.workers
    cores = quantity_value(spec.kubernetes.resources.cpu_limit)
    return min(2 * math.ceil(cores) + 1, MAX_WORKERS)


class _PodParts:
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


def web_deployment(spec: Spec, pod: _PodParts) -> Manifest:
    bind = TcpBind(spec.kubernetes.port)
    argv = bound_server_argv(spec, image.VENV, image.APP_DIR, bind, web_workers(spec))
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
        "selector": {"matchLabels": _selector(spec, "web")},
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
        "metadata": _meta(spec, spec.name, "web"),
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


def _static_copy(pod: _PodParts) -> Manifest:
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
    spec: Spec, pod: _PodParts, name: str, argv: list[str], count: int, startsecs: int
) -> Manifest:
    """A process of the spec (a queue worker, say): a Deployment of its own, `count` pods."""
    component = f"process-{_dns(name)}"
    container = pod.container(_dns(name), argv)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, f"{spec.name}-{_dns(name)}", component),
        "spec": {
            "replicas": count,
            "selector": {"matchLabels": _selector(spec, component)},
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


def release_job(spec: Spec, pod: _PodParts, image_ref: str) -> Manifest:
    container = pod.container("release", shlex.split(spec.release))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(spec, release_job_name(spec, image_ref), "release"),
        "spec": {
            "backoffLimit": 0,  # a failed migration fails the release, as on a host
            "ttlSecondsAfterFinished": JOB_TTL,
            "template": {
                "metadata": {"labels": labels(spec, "release")},
                "spec": pod.pod([container], spec.server.graceful_timeout, restartPolicy="Never"),
            },
        },
    }


def service(spec: Spec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, spec.name, "web"),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(spec, "web"),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ingress(spec: Spec) -> Manifest:
    """Routes `domains` (or, with none, any host name) to the Service; TLS with the
    [kubernetes] table's certificate Secret."""
    k8s = spec.kubernetes
    backend = {"service": {"name": spec.name, "port": {"name": "http"}}}
    paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
    hosts = [d.rstrip(".") for d in spec.domains]
    rules = [{"host": h, "http": {"paths": paths}} for h in hosts] or [{"http": {"paths": paths}}]
    body: Manifest = {"rules": rules}
    if k8s.ingress_class:
        body = {"ingressClassName": k8s.ingress_class, **body}
    tls_secret = k8s.tls_secret_name(spec.name)
    if tls_secret:
        body["tls"] = [{"hosts": hosts, "secretName": tls_secret}]
    timeout = spec.server.timeout + 5
    if spec.server.type.serves != "wsgi":
        timeout = max(timeout, spec.server.websocket_timeout)
    # ingress-nginx's names for what a host's nginx does; other controllers ignore them
    annotations = {
        "nginx.ingress.kubernetes.io/proxy-read-timeout": str(timeout),
        "nginx.ingress.kubernetes.io/proxy-send-timeout": str(timeout),
        "nginx.ingress.kubernetes.io/proxy-body-size": "10m",
    }
    if k8s.cluster_issuer:
        annotations["cert-manager.io/cluster-issuer"] = k8s.cluster_issuer
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {**_meta(spec, spec.name, "web"), "annotations": annotations},
        "spec": body,
    }


def volume_claim(spec: Spec) -> Manifest:
    k8s = spec.kubernetes
    body: Manifest = {
        "accessModes": [k8s.storage_access],
        "resources": {"requests": {"storage": k8s.storage_size}},
    }
    if k8s.storage_class:
        body["storageClassName"] = k8s.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(spec, f"{spec.name}-data", "data"),
        "spec": body,
    }


def autoscaler(spec: Spec) -> Manifest:
    scale = spec.kubernetes.autoscale
    assert scale is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec, spec.name, "web"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": scale.min,
            "maxReplicas": scale.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": scale.cpu},
                    },
                }
            ],
        },
    }


def config_env(spec: Spec, tree: bool) -> dict[str, str]:
    """The app's plain variables (the ConfigMap): what a host's release sees, but its
    secrets, and paths inside the image."""
    env = {
        "FLASK_APP": spec.entry,
        **django_env(spec),
        **spec.env,
        # as a host's release has them: the venv's commands first (a process's `celery`)
        "PATH": f"{image.VENV}/bin:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(image.VENV),
        "PYTHONPATH": str(image.workdir(tree)),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # the root file system is read-only
        "SHIPYARD_APP": spec.name,
    }
    return env


def django_env(spec: Spec) -> dict[str, str]:
    """A Django project's DJANGO_* variables (host/djangoapp.py), with the image's paths:
    the Ingress answers `domains` over https, the probes ask for localhost."""
    if spec.django is None:
        return {}
    hosts = allowed_hosts(spec) if spec.domains else ["*", *LOCAL_NAMES]
    origins = [f"{scheme}://{d.rstrip('.')}" for d in spec.domains for scheme in ("https", "http")]
    return {
        "DJANGO_SETTINGS_MODULE": WRAPPER_MODULE if spec.django.wrap else spec.django.settings,
        "DJANGO_ALLOWED_HOSTS": ",".join(hosts),
        "DJANGO_CSRF_TRUSTED_ORIGINS": ",".join(origins),
        **(
            {"DJANGO_STATIC_ROOT": f"{image.STATIC}/django-static"}
            if spec.django.collectstatic
            else {}
        ),
        "DJANGO_MEDIA_ROOT": f"{image.DATA}/media",
        "DJANGO_MEDIA_URL": spec.django.media_url,
        "DJANGO_DATA_DIR": f"{image.DATA}/data",
    }


def env_file(variables: dict[str, str]) -> str:
    """KEY=value lines, as kustomize's generators read them (the value as it is, to the
    line's end)."""
    return "".join(f"{key}={value}\n" for key, value in sorted(variables.items()))


def secret_example(spec: Spec) -> str:
    lines = [
        "# The app's secrets, for kustomize's secretGenerator: copy this file to secret.env",
        "# (chmod 600; never commit it), and give each a value, KEY=value on one line.",
        "# 'generate' ones: any long random string, e.g. the output of",
        "#   python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
    ]
    lines += [f"{key}=" for key in sorted(spec.secrets)]
    return "\n".join(lines) + "\n"


def kustomization(spec: Spec, resources: list[str], has_secrets: bool) -> Manifest:
    """The base: the manifests, and the ConfigMap and Secret made from their env files, whose
    names carry a hash of their content so that a change rolls the pods."""
    generated = {"labels": labels(spec, "config")}
    body: Manifest = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
        "generatorOptions": generated,
        # `env:` is read by every kustomize, from the one in Debian 12's kubectl to today's
        "configMapGenerator": [{"name": f"{spec.name}-env", "env": CONFIG_ENV}],
    }
    if nginx.needed(spec):
        body["configMapGenerator"].append({"name": f"{spec.name}-nginx", "files": [NGINX_CONF]})
    if has_secrets:
        body["secretGenerator"] = [
            {"name": f"{spec.name}-secrets", "env": SECRET_ENV, "type": "Opaque"}
        ]
    return body


class _Dumper(yaml.SafeDumper):
    """Every value written out where it is: no YAML anchors for the probes' shared parts."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(manifest: Manifest) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def _dns(name: str) -> str:
    """A process name as a DNS label (Kubernetes names allow no '_')."""
    return name.replace("_", "-")
