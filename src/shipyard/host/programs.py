"""The supervisor programs of an app's slot: the web server and each instance of its processes."""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.host.layout import AppLayout
from shipyard.spec.model import Spec


@dataclass(frozen=True)
class Instance:
    """One supervisor program: `kind` is the spec's name ("web", "worker"), `name` this
    instance's ("worker", "worker-1", ...), which names its program and its log."""

    kind: str
    name: str


def instance_names(kind: str, count: int) -> list[str]:
    """The first instance keeps the bare name, so a count of 1 runs the program it always
    did and scaling up or down never restarts the instances that stay."""
    return [kind if i == 0 else f"{kind}-{i}" for i in range(count)]


def instances(spec: Spec) -> list[Instance]:
    """Web first, then every instance of the extra processes, in name order."""
    out = [Instance("web", "web")]
    for kind, process in sorted(spec.processes.items()):
        out.extend(Instance(kind, name) for name in instance_names(kind, process.count))
    return out


def workers(spec: Spec) -> list[Instance]:
    return [i for i in instances(spec) if i.kind != "web"]


def slot_programs(app: AppLayout, spec: Spec, slot: str) -> list[str]:
    return [app.program(i.name, slot) for i in instances(spec)]
