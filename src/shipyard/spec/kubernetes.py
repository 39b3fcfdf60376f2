"""The spec's `[kubernetes]` table: what `shipyard export kubernetes` renders beyond the app."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A Kubernetes quantity as people write them: 250m, 0.5, 2 (CPU); 512Mi, 1Gi, 1G (memory).
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
# A DNS-1123 subdomain: the names of classes and Secrets.
OBJECT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _quantity(value: str) -> str:
    if not QUANTITY_RE.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity: write CPU as '250m' or '1', "
            "memory as '512Mi' or '1Gi'"
        )
    return value


_SCALE = {
    "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
}  # fmt: skip


def quantity_value(quantity: str) -> float:
    """A quantity as a number (cores, bytes), to compare two of them."""
    number = re.match(r"^[0-9.]+", quantity)
    assert number is not None  # checked by _quantity
    return float(number.group()) * _SCALE[quantity[number.end() :]]


def _object_name(value: str) -> str:
    if value and not OBJECT_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes object name (lowercase letters, digits, '-' and '.')"
        )
    return value


class ResourcesSpec(_Strict):
    """What each pod (web and every process) requests from its node, and may use at most."""

    cpu: str = Field(default="250m", description="CPU requested: '250m' is a quarter of a core.")
    memory: str = Field(default="256Mi", description="Memory requested.")
    cpu_limit: str = Field(
        default="1",
        description="CPU at most; with server.workers = 0, the web server runs 2 x this "
        "(rounded up) + 1 workers, at most 8.",
    )
    memory_limit: str = Field(
        default="512Mi", description="Memory at most: a pod using more is killed and restarted."
    )

    @field_validator("cpu", "memory", "cpu_limit", "memory_limit")
    @classmethod
    def _quantities(cls, value: str) -> str:
        return _quantity(value)

    @model_validator(mode="after")
    def _within_limits(self) -> ResourcesSpec:
        """Kubernetes refuses a pod that requests more than its limit."""
        for asked, most in (("cpu", "cpu_limit"), ("memory", "memory_limit")):
            if quantity_value(getattr(self, asked)) > quantity_value(getattr(self, most)):
                raise ValueError(
                    f"{asked} = {getattr(self, asked)!r} is more than {most} = "
                    f"{getattr(self, most)!r}: raise {most} too"
                )
        return self


class AutoscaleSpec(_Strict):
    """A HorizontalPodAutoscaler for the web Deployment (the table present asks for one)."""

    min: int = Field(default=2, ge=1, le=1000, description="Fewest web pods.")
    max: int = Field(default=10, ge=1, le=1000, description="Most web pods.")
    cpu: int = Field(
        default=75,
        ge=1,
        le=100,
        description="Average CPU use, in percent of the pods' requested `cpu`, that the "
        "autoscaler keeps them at.",
    )

    @model_validator(mode="after")
    def _range(self) -> AutoscaleSpec:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class KubernetesSpec(_Strict):
    """How `shipyard export kubernetes` renders the app (docs/engines.md): each key has a
    default, and a kustomize overlay of the rendered base changes the rest per cluster."""

    replicas: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Web pods, when [kubernetes.autoscale] is not set (then it decides).",
    )
    port: int = Field(
        default=8000,
        ge=1024,
        le=65535,
        description="TCP port the app server listens on in its pod (the image's port; the "
        "pod runs as a user that cannot bind below 1024).",
    )
    ingress_class: str = Field(
        default="", description="ingressClassName of the Ingress; empty: the cluster's default."
    )
    tls_secret: str = Field(
        default="",
        description="A kubernetes.io/tls Secret holding the certificate of `domains`, served "
        "by the Ingress; empty: '<name>-tls' when `cluster_issuer` is set, else no TLS.",
    )
    cluster_issuer: str = Field(
        default="",
        description="A cert-manager ClusterIssuer (ACME, e.g. Let's Encrypt) that fills "
        "`tls_secret` for `domains`.",
    )
    storage_class: str = Field(
        default="",
        description="storageClassName of the volume of `persistent` directories; empty: the "
        "cluster's default.",
    )
    storage_size: str = Field(
        default="1Gi", description="Size of the volume of `persistent` directories."
    )
    storage_access: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        default="ReadWriteOnce",
        description="ReadWriteOnce: every pod that mounts the volume must run on one node; "
        "ReadWriteMany (a storage class that offers it, e.g. NFS) for pods spread over nodes.",
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec,
        description="Requests and limits of each pod: see [kubernetes.resources].",
    )
    autoscale: AutoscaleSpec | None = Field(
        default=None, description="A HorizontalPodAutoscaler: see [kubernetes.autoscale]."
    )

    @field_validator("ingress_class", "tls_secret", "cluster_issuer", "storage_class")
    @classmethod
    def _names(cls, value: str) -> str:
        return _object_name(value)

    @field_validator("storage_size")
    @classmethod
    def _size(cls, value: str) -> str:
        return _quantity(value)

    def tls_secret_name(self, app: str) -> str:
        """The Secret the Ingress serves its certificate from; empty: no TLS."""
        return self.tls_secret or (f"{app}-tls" if self.cluster_issuer else "")
