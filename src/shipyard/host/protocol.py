"""The agent protocol as data: one model per request and per reply, and its version.

A request names its reply type (`Request[R]`), so the client's `call(request)` returns that
reply, parsed, and the agent routes a request by its `op`. Both ends reject unknown keys: a
field added on one side only is caught at once, as a mismatch, not read as a default.
`PROTOCOL_VERSION` goes up with any change to these models; the hello carries it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shipyard.host.tls import TlsSettings
from shipyard.plan import Plan as DeployPlan
from shipyard.spec.model import Spec

PROTOCOL_VERSION = 7


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reply(Message):
    """What the agent answers to a request that succeeded."""


R = TypeVar("R", bound=Reply)


class Request(Message, Generic[R]):
    """A request; `R` is its reply's model, found again at runtime as `reply_model`."""

    reply_model: ClassVar[type[Reply]] = Reply
    op: str  # each request's own literal: what the agent routes it by

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for base in cls.__mro__:
            args = getattr(base, "__pydantic_generic_metadata__", {}).get("args", ())
            if args and isinstance(args[0], type) and issubclass(args[0], Reply):
                cls.reply_model = args[0]
                return

    def parse_reply(self, data: dict[str, Any]) -> R:
        reply: R = self.reply_model.model_validate(data)  # type: ignore[assignment]
        return reply


class AppRequest(Request[R], Generic[R]):
    """A request about one app on the host (checked there: no '/', no leading dot)."""

    app: str


class SpecRequest(Request[R], Generic[R]):
    """A request that acts on the app as the spec describes it."""

    spec: Spec


class FileHeader(Message):
    """A file of the payload that follows the request: where it goes, its size and digest."""

    path: str
    size: int
    sha256: str


class Done(Reply):
    """The request succeeded and has nothing to say."""


class ErrorDetail(Message):
    """Why a request failed, with the agent's protocol version (to tell a mismatch apart)."""

    type: str
    message: str
    hint: str | None = None
    exit_code: int = 1
    protocol: int = PROTOCOL_VERSION


class ErrorReply(Message):
    ok: Literal[False] = False
    error: ErrorDetail


# --- facts and files ------------------------------------------------------------------------


class StateReply(Reply):
    live: str | None
    slot: str | None
    installed: list[str]
    config_keys: list[str]
    setup_done: bool = False  # the spec's one-time setup is recorded as done here
    workdir: str = ""  # where the live release runs (its tree, or itself); "" when none


class LockParams(Message):
    action: str = "deploy"
    wait: float = 0


class HelloReply(Reply):
    protocol: int
    version: str
    runtime: str
    interpreter: str
    python: str
    platform: str
    libc: str
    user: str
    wheels: dict[str, str]  # wheel file -> sha256, in the host's store
    artifacts: list[str]  # release ids received
    state: StateReply | None = None


class Hello(Request[HelloReply]):
    """Facts about the host; with `app`, its state, and with `lock`, its lock taken first."""

    op: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    app: str | None = None
    lock: LockParams | None = None


class Lock(AppRequest[Done]):
    op: Literal["lock"] = "lock"
    action: str = "deploy"
    wait: float = 0


class State(AppRequest[StateReply]):
    op: Literal["state"] = "state"


class Reuse(Message):
    """Files of an artifact the host has (`base`) that the new one has unchanged."""

    base: str  # that artifact's release id
    files: dict[str, str]  # relative path -> sha256


class ReceiveReply(Reply):
    received: int
    reuse_failed: list[str] = []


class Receive(Request[ReceiveReply]):
    """Wheels and an artifact in the payload; installed for `install` (an app) when given."""

    op: Literal["receive"] = "receive"
    release: str
    files: list[FileHeader] = []
    install: str | None = None
    reuse: Reuse | None = None


class Install(AppRequest[Done]):
    op: Literal["install"] = "install"
    release: str


class ConfigReply(Reply):
    config: dict[str, str]


class ConfigGet(AppRequest[ConfigReply]):
    op: Literal["config_get"] = "config_get"


class ConfigPut(AppRequest[Done]):
    op: Literal["config_put"] = "config_put"
    config: dict[str, str]


# --- the release state machine --------------------------------------------------------------


class StageReply(Reply):
    slot: str
    previous: str | None
    notes: list[str] = []  # what the deploying machine should tell (the setup's fate)


class Stage(AppRequest[StageReply]):
    """Start `release` beside the serving one. `release_cmd`: run the spec's commands here
    (setup on the first deploy, then release); `setup_done_on`: the host on which the setup is
    done for the whole target, to record here instead of running it."""

    op: Literal["stage"] = "stage"
    release: str
    action: str = "deploy"
    release_cmd: bool = False
    setup_done_on: str | None = None


class CommitReply(Reply):
    release: str
    slot: str
    previous: str | None


class Commit(AppRequest[CommitReply]):
    op: Literal["commit"] = "commit"


class AbortReply(Reply):
    aborted: bool


class Abort(AppRequest[AbortReply]):
    op: Literal["abort"] = "abort"


class RollbackTargetReply(Reply):
    release: str


class RollbackTarget(AppRequest[RollbackTargetReply]):
    op: Literal["rollback_target"] = "rollback_target"
    to: str | None = None


class RestartReply(Reply):
    outcome: CommitReply | None  # None: nothing is live, so nothing restarted


class Restart(SpecRequest[RestartReply]):
    op: Literal["restart"] = "restart"
    config: dict[str, str] | None = None
    action: str = "restart"
    wait: float = 0


class ScaleReply(Reply):
    scale: dict[str, int]  # the counts now set on the host
    restarted: str | None  # the release restarted on a fresh slot (web scaled), if any


class Scale(SpecRequest[ScaleReply]):
    op: Literal["scale"] = "scale"
    changes: dict[str, int]
    wait: float = 0


class ProcessesReply(Reply):
    processes: list[str]


class Start(SpecRequest[ProcessesReply]):
    op: Literal["start"] = "start"


class Stop(SpecRequest[ProcessesReply]):
    op: Literal["stop"] = "stop"


class DestroyReply(Reply):
    found: bool  # whether the app was there to destroy


class Destroy(SpecRequest[DestroyReply]):
    op: Literal["destroy"] = "destroy"
    purge: bool = False


class ProcessInfo(Message):
    name: str
    state: str
    pid: int
    description: str


class StatusReply(Reply):
    app: str
    url: str
    base_dir: str
    release: str | None
    slot: str | None
    supervisord: bool
    processes: list[ProcessInfo]
    healthy: bool
    health: str
    serving_release: str | None
    scale: dict[str, int] = {}
    runtime: list[str] = []  # what is wrong with the runtime (heal.py's actions, described)


class Status(SpecRequest[StatusReply]):
    op: Literal["status"] = "status"


class ReleaseInfo(Message):
    id: str
    created: str
    version: str = ""
    git_sha: str = ""
    deployed_by: str = ""
    deployed_at: str = ""
    status: str = "installed"
    deployed_seq: int = 0
    on_disk: bool
    live: bool


class ReleasesReply(Reply):
    releases: list[ReleaseInfo]  # newest first


class Releases(AppRequest[ReleasesReply]):
    op: Literal["releases"] = "releases"


class FrozenPin(Message):
    name: str  # canonical
    version: str
    sha256: str  # of the wheel the release installed


class FreezeReply(Reply):
    release: str
    pins: list[FrozenPin]  # by name


class Freeze(AppRequest[FreezeReply]):
    """The live release's pinned dependencies, from its manifest."""

    op: Literal["freeze"] = "freeze"


class PlanReply(Reply):
    plan: DeployPlan


class Plan(SpecRequest[PlanReply]):
    """What a deploy of `release` would do on the host; reads, changes nothing."""

    op: Literal["plan"] = "plan"
    release: str
    release_cmd: bool = True  # as for Stage
    setup_done_on: str | None = None
    tree: bool = False  # the release is the project's source tree, not a wheel


# --- load balancer --------------------------------------------------------------------------


class LbReply(Reply):
    changed: bool


class Lb(AppRequest[LbReply]):
    """Point the host's nginx at the web hosts (address, drained); static files in the
    payload when `update_static`."""

    op: Literal["lb"] = "lb"
    release: str
    spec: Spec
    backends: list[tuple[str, bool]]
    static: dict[str, str]  # URL prefix -> dir in the artifact
    update_static: bool = False
    files: list[FileHeader] = []


class TlsReply(Reply):
    changed: bool  # the certificate, key or settings differ from what the host had


class Tls(AppRequest[TlsReply]):
    """Keep the app's HTTPS settings on the host (None: HTTPS off), with the files that go
    with them in the payload: 'certificate', 'key', 'ca_bundle' (written 0600; never in
    a message, so never in a log)."""

    op: Literal["tls"] = "tls"
    settings: TlsSettings | None
    files: list[FileHeader] = []


class LbRemoveReply(Reply):
    removed: bool


class LbRemove(AppRequest[LbRemoveReply]):
    op: Literal["lb_remove"] = "lb_remove"


AnyRequest = Annotated[
    Union[  # noqa: UP007 - a discriminated union is spelled with Union in an Annotated
        Hello,
        Lock,
        State,
        Receive,
        Install,
        ConfigGet,
        ConfigPut,
        Stage,
        Commit,
        Abort,
        RollbackTarget,
        Restart,
        Scale,
        Start,
        Stop,
        Destroy,
        Status,
        Releases,
        Freeze,
        Plan,
        Lb,
        LbRemove,
        Tls,
    ],
    Field(discriminator="op"),
]
REQUESTS: TypeAdapter[AnyRequest] = TypeAdapter(AnyRequest)


def parse_request(message: dict[str, Any]) -> AnyRequest:
    """The request a message is; pydantic's ValidationError when it is none."""
    return REQUESTS.validate_python(message)
