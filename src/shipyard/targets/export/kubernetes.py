"""The Kubernetes export: a validated spec turned into manifests and a kustomize base.
Pure: dicts and texts from the spec, an image reference and the secrets' names."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from shipyard.errors import SpecError
from shipyard.spec.model import Spec, TlsSpec
from shipyard.targets.export import image, nginx
from shipyard.targets.export.workloads import (
    NGINX_CONF,
    PodParts,
    dns,
    labels,
    meta,
    needs_volume,
    process_deployment,
    release_job,
    selector,
    web_deployment,
)

Manifest = dict[str, Any]

CONFIG_ENV = "config.env"
SECRET_ENV = "secret.env"
SECRET_EXAMPLE = "secret.env.example"
# `[tls]` mode files: the user's certificate and key, made into a kubernetes.io/tls Secret
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"


@dataclass(frozen=True)
class Certificate:
    """A certificate chain and its key (PEM) the user provides; the key is secret."""

    chain: str
    key: str

    def __repr__(self) -> str:
        return "Certificate(chain=..., key=***)"


@dataclass(frozen=True)
class Export:
    """What `export kubernetes` writes: each file's name and text, and the secrets' file
    (its values, 0600) or, with none known, an example to fill."""

    files: dict[str, str]
    secret_file: str | None = None  # secret.env's text: KEY=value lines
    resources: list[str] = field(default_factory=list)  # the manifests kustomize applies
    certificate: Certificate | None = None  # tls.crt, and tls.key (0600)


def render(
    spec: Spec,
    image_ref: str,
    tree: bool,
    secrets: dict[str, str] | None,
    tls: TlsSpec | None = None,
    certificate: Certificate | None = None,
) -> Export:
    """The export of `spec` running `image_ref`; `tree`: the release is a source tree;
    `secrets`: every value the app's Secret holds, or None when they are unknown (then
    secret.env is for the user to write, and an example lists its names); `tls`: the
    target's `[tls]`, with the `certificate` its files hold in mode files."""
    check_exportable(spec)
    check_tls(spec, tls, certificate)
    has_secrets = bool(spec.secrets or secrets)
    manifests = all_manifests(spec, image_ref, tree, has_secrets, certificate is not None)
    files = {name: dump(manifest) for name, manifest in manifests.items()}
    files[CONFIG_ENV] = env_file(config_env(spec, tree))
    if nginx.needed(spec):
        files[NGINX_CONF] = nginx.nginx_conf(spec, spec.kubernetes.port)
    secret_text = None
    if secrets is not None:
        secret_text = env_file(secrets)
    elif spec.secrets:
        files[SECRET_EXAMPLE] = secret_example(spec)
    files["kustomization.yaml"] = dump(
        kustomization(spec, list(manifests), has_secrets, certificate is not None)
    )
    return Export(files, secret_text, list(manifests), certificate)


def check_tls(spec: Spec, tls: TlsSpec | None, certificate: Certificate | None) -> None:
    """`[tls]` in the cluster: a certificate of the user's becomes the Ingress's Secret; ACME
    is the cluster's own business (cert-manager), which needs its issuer's name."""
    k8s = spec.kubernetes
    if tls is None or k8s.tls_secret_name(spec.name):
        return  # no HTTPS, or [kubernetes] names the certificate's Secret itself
    if tls.mode == "acme":
        raise SpecError(
            "[tls] asks for ACME, which in a cluster is done by the cluster (cert-manager), "
            "not by shipyard: the export needs the issuer to name.",
            hint="Set kubernetes.cluster_issuer = 'letsencrypt' (your ClusterIssuer's name), "
            "or kubernetes.tls_secret to a Secret you manage.",
        )
    if certificate is None:
        raise SpecError("[tls] mode files: the certificate and key were not read.")


def all_manifests(
    spec: Spec, image_ref: str, tree: bool, has_secrets: bool, own_certificate: bool = False
) -> dict[str, Manifest]:
    """Each manifest by its file name, in the order kustomize lists them."""
    pod = PodParts(spec, image_ref, tree, has_secrets)
    found: dict[str, Manifest] = {"deployment-web.yaml": web_deployment(spec, pod)}
    for name, process in sorted(spec.processes.items()):
        argv = shlex.split(process.command)
        found[f"deployment-{dns(name)}.yaml"] = process_deployment(
            spec, pod, name, argv, process.count, process.startsecs
        )
    found["service.yaml"] = service(spec)
    found["ingress.yaml"] = ingress(spec, own_certificate)
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


def service(spec: Spec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(spec, spec.name, "web"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec, "web"),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ingress(spec: Spec, own_certificate: bool = False) -> Manifest:
    """Routes `domains` (or, with none, any host name) to the Service; TLS with the
    [kubernetes] table's certificate Secret, or the one made from `[tls]`'s files."""
    k8s = spec.kubernetes
    backend = {"service": {"name": spec.name, "port": {"name": "http"}}}
    paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
    hosts = [d.rstrip(".") for d in spec.domains]
    rules = [{"host": h, "http": {"paths": paths}} for h in hosts] or [{"http": {"paths": paths}}]
    body: Manifest = {"rules": rules}
    if k8s.ingress_class:
        body = {"ingressClassName": k8s.ingress_class, **body}
    tls_secret = k8s.tls_secret_name(spec.name) or (f"{spec.name}-tls" if own_certificate else "")
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
        "metadata": {**meta(spec, spec.name, "web"), "annotations": annotations},
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
        "metadata": meta(spec, f"{spec.name}-data", "data"),
        "spec": body,
    }


def autoscaler(spec: Spec) -> Manifest:
    scale = spec.kubernetes.autoscale
    assert scale is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(spec, spec.name, "web"),
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
        **image.django_env(spec),
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


def kustomization(
    spec: Spec, resources: list[str], has_secrets: bool, own_certificate: bool = False
) -> Manifest:
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
    secrets: list[Manifest] = []
    if has_secrets:
        secrets.append({"name": f"{spec.name}-secrets", "env": SECRET_ENV, "type": "Opaque"})
    if own_certificate:
        tls = {"name": f"{spec.name}-tls", "type": "kubernetes.io/tls"}
        secrets.append({**tls, "files": [TLS_CERT, TLS_KEY]})
    if secrets:
        body["secretGenerator"] = secrets
    return body


class _Dumper(yaml.SafeDumper):
    """Every value written out where it is: no YAML anchors for the probes' shared parts."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(manifest: Manifest) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
