"""The install's file steps, done in-process: what rm, mkdir, cp and chown did."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from shipyard.errors import DeployError
from shipyard.host.filesteps import Chown, LinkTree, MakeDirs, RemoveTree
from shipyard.host.local import LocalConnection
from shipyard.host.steps import InstallContext

# file steps ignore the connection: they run in the installer's process
CTX = InstallContext(LocalConnection(), Path("/nonexistent/wheels"))


def test_an_artifact_is_linked_into_a_release_not_copied(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    (artifact / "static" / "css").mkdir(parents=True)
    (artifact / "static" / "css" / "style.css").write_text("body {}")
    (artifact / "manifest.json").write_text("{}")
    (artifact / "static" / "latest").symlink_to("css")
    release = tmp_path / "release"
    MakeDirs((release, tmp_path / "shared" / "var")).run(CTX)
    LinkTree((artifact / "manifest.json", artifact / "static"), release).run(CTX)
    for rel in ("manifest.json", "static/css/style.css"):
        assert os.stat(release / rel).st_ino == os.stat(artifact / rel).st_ino
    assert os.readlink(release / "static" / "latest") == "css"
    assert (tmp_path / "shared" / "var").is_dir()
    RemoveTree(release).run(CTX)
    RemoveTree(release).run(CTX)  # gone already: nothing to do, as rm -rf
    assert not release.exists() and (artifact / "static" / "css" / "style.css").is_file()


def test_a_file_step_that_fails_says_what_and_where(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DeployError) as caught:
        MakeDirs((tmp_path / "file" / "sub",)).run(CTX)
    assert f"cannot make directories {tmp_path}/file/sub" in caught.value.message
    assert str(tmp_path / "file" / "sub") in caught.value.message
    with pytest.raises(DeployError, match="there is no user nosuchuser-sy"):
        Chown("nosuchuser-sy", (tmp_path,)).run(CTX)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_chown_gives_a_tree_to_the_user_without_following_links(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    outside = tmp_path / "outside"
    outside.write_text("root's")
    data = tmp_path / "var"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "db.sqlite").write_text("")
    (data / "link").symlink_to(outside)
    Chown("nobody", (data,), recursive=True).run(CTX)
    for path in (data, data / "sub", data / "sub" / "db.sqlite"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert os.lstat(data / "link").st_uid == nobody.pw_uid
    assert outside.stat().st_uid == 0  # a link in the app's data does not give away its target
    top = tmp_path / "top"
    (top / "inner").mkdir(parents=True)
    Chown("nobody", (top,)).run(CTX)
    assert top.stat().st_uid == nobody.pw_uid and (top / "inner").stat().st_uid == 0


def test_a_full_disk_is_named_with_its_filesystem_and_what_is_free(tmp_path: Path) -> None:
    import errno

    from shipyard.host.diskspace import DiskFull, disk_full

    # a copy's error names its source, then (after winerror) its destination
    copy = OSError(errno.ENOSPC, "No space left on device", "/src/a", None, str(tmp_path / "b"))
    full = disk_full(copy)
    assert isinstance(full, DiskFull)
    assert full.message.startswith(f"no space left writing {tmp_path / 'b'} (on the filesystem")
    assert " free)." in full.message and full.hint and "serving keeps serving" in full.hint
    quota = disk_full(OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp_path)))
    assert quota is not None and quota.message.startswith("the disk quota is used up")
    assert disk_full(OSError(errno.EACCES, "Permission denied", str(tmp_path))) is None
    assert disk_full(ValueError("no")) is None
