"""The spec's one-time `setup` command: whether a deploy runs it here, and its record.

The record is kept with the app's data, in `shared/`, rather than in state.json: `destroy`
removes state.json but keeps the data, and a data set up once must not be set up again when
the app comes back. `destroy --purge` removes both, so a purged app is new again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from shipyard.errors import ShipyardError
from shipyard.host.layout import AppLayout
from shipyard.host.local import write_atomic
from shipyard.host.state import now

RAN = "ran"
ASSUMED = "assumed"  # the app was live here before its spec had a setup


@dataclass(frozen=True)
class SetupRecord:
    """The app's setup is done here: when, for which release, with which command, and how
    (`ran`; `assumed`; or `on <host>`, the fleet host it ran on for this target)."""

    at: str
    release: str
    command: str
    how: str = RAN

    def describe(self) -> str:
        if self.how == RAN:
            return f"it ran on {self.at} (release {self.release})"
        if self.how == ASSUMED:
            return f"treated as done on {self.at}: the app was live before it had a setup"
        return f"it ran {self.how} for this target (recorded here on {self.at})"


@dataclass(frozen=True)
class SetupStep:
    """What a deploy does about the setup command here: run it, or record it as done without
    running it; `note` says which and why ("" when the spec has no setup)."""

    run: bool = False
    record: SetupRecord | None = None
    note: str = ""


NO_SETUP = SetupStep()


def setup_step(
    command: str,
    done: SetupRecord | None,
    live: str | None,
    release: str,
    at: str,
    *,
    run_here: bool,
    done_on: str | None = None,
) -> SetupStep:
    """Decide about `command` for a deploy of `release`.

    Args:
        done: the record here, if the setup is done already.
        live: the release serving here. An app that serves without a record was deployed
            before its spec had a setup: its data exists, so the setup counts as done.
        run_here: this host runs the deploy's commands (the local target, or a fleet's
            release host).
        done_on: a fleet host on which the setup is done for this whole target (a shared
            database): it is recorded here and not run.
    """
    if not command:
        return NO_SETUP
    if done is not None:
        return SetupStep(note=f"setup is done here already ({done.describe()}): not run again")
    if live is not None:
        return SetupStep(
            record=SetupRecord(at, release, command, ASSUMED),
            note=f"setup treated as done, not run: the app was already live here (release "
            f"{live}) when `setup` appeared in its spec",
        )
    if done_on is not None:
        return SetupStep(
            record=SetupRecord(at, release, command, f"on {done_on}"),
            note=f"setup is done for this target on {done_on}: not run here",
        )
    if run_here:
        return SetupStep(run=True, note=f"first deploy here: run the setup command once: {command}")
    return NO_SETUP


def setup_for(
    app: AppLayout,
    command: str,
    live: str | None,
    release_id: str,
    *,
    release_cmd: bool,
    setup_on: str | None = None,
) -> SetupStep:
    """What a stage of `release_id` does about the setup `command` here, from its record.
    `release_cmd` and `setup_on`: as lifecycle.stage has them; with neither (a rollback, a
    restart) it never runs."""
    if not command or not (release_cmd or setup_on):
        return NO_SETUP
    return setup_step(
        command, load_setup(app), live, release_id, now(), run_here=release_cmd, done_on=setup_on
    )


def load_setup(app: AppLayout) -> SetupRecord | None:
    try:
        raw = json.loads(app.setup_file.read_text())
        return SetupRecord(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as err:
        raise ShipyardError(
            f"{app.setup_file} is corrupt ({err}).",
            hint="It records that the app's setup command has run: write it again as "
            '{"at": "...", "release": "...", "command": "..."} if it has, or remove it to '
            "have the next deploy run the setup command again.",
        ) from None


def save_setup(app: AppLayout, record: SetupRecord) -> None:
    write_atomic(app.setup_file, (json.dumps(asdict(record), indent=2) + "\n").encode(), 0o644)
