"""Who nginx's workers run as, so they reach the app's socket and static files and no more."""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import DeployError

# A dedicated user for the workers of shipyard's own nginx when shipyard runs as root: the
# first that exists (Debian's, nginx.org's, anyone's).
WORKER_USERS = ("www-data", "nginx", "nobody")
SYSTEM_NGINX_CONF = Path("/etc/nginx/nginx.conf")


@dataclass(frozen=True)
class Workers:
    """nginx's `user` directive: workers run as `user`, with `group` as their group."""

    user: str
    group: str

    @property
    def directive(self) -> str:
        return f"{self.user} {self.group}"

    @property
    def is_root(self) -> bool:
        return self.user == "root"


def app_group(run_as: str | None) -> str:
    """The group of the app's processes, and so of its socket: the app user's primary group,
    or this process's."""
    gid = pwd.getpwnam(run_as).pw_gid if run_as else os.getegid()
    return _group_name(gid)


def managed_workers(base: Path, run_as: str | None) -> Workers | None:
    """The workers of shipyard's own nginx; None when shipyard is not root (they run as its
    user, like the app).

    As root they run as a dedicated user with the app's group, which is what lets them
    connect to the app's socket (0660): never as root, unless that user cannot reach `base`
    (a base under /root, which is 0700): then they must stay root to serve at all.
    """
    if os.geteuid() != 0:
        return None
    group = app_group(run_as)
    user = next((name for name in WORKER_USERS if _user_exists(name)), None)
    if user is None or not reachable(base, user, group):
        return Workers("root", "root")
    _check_one_group(base, group)
    return Workers(user, group)


def _check_one_group(base: Path, group: str) -> None:
    """One nginx serves every app under `base`, and its workers have one group: each app's
    socket dir (shared/run, the app user's) must be of it, or that app would answer 502."""
    gid = grp.getgrnam(group).gr_gid
    others = sorted(
        run.parent.parent.name for run in base.glob("*/shared/run") if _gid(run) not in (gid, None)
    )
    if others:
        raise DeployError(
            f"the apps under {base} would run as users of different groups: "
            f"{', '.join(others)} and this one ({group}). One nginx serves them all, and its "
            "workers reach an app's socket through that app's group.",
            hint="Give these apps the same app_user, or this one a base directory of its own "
            "(SHIPYARD_HOME, or the target's base_dir). Nothing was switched: what served "
            "still serves.",
        )


def _gid(path: Path) -> int | None:
    try:
        return path.stat().st_gid
    except OSError:
        return None


def system_nginx_user(conf_text: str) -> str:
    """The user the host's own nginx runs its workers as (its `user` directive)."""
    match = re.search(r"^\s*user\s+([^\s;]+)", conf_text, flags=re.M)
    return match.group(1) if match else "www-data"


def reachable(path: Path, user: str, group: str) -> bool:
    """Whether nginx's workers running as `user` with `group` can search every directory
    down to `path` (they also get the groups that list `user` as a member)."""
    uid = pwd.getpwnam(user).pw_uid
    gids = {grp.getgrnam(group).gr_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for directory in [path, *path.parents]:
        try:
            info = directory.stat()
        except OSError:
            return False
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def is_member(user: str, group: str) -> bool:
    entry = grp.getgrnam(group)
    return user in entry.gr_mem or pwd.getpwnam(user).pw_gid == entry.gr_gid


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def socket_mode() -> int:
    """The mode of the app server's socket: nginx's workers are this user when shipyard is
    not root; as root they reach it through its group (the app's)."""
    return 0o660 if os.geteuid() == 0 else 0o600
