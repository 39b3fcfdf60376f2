"""Wheels for the hosts' platform: tags, the pip command, and one platform per fleet."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.tags import Tag

from shipyard.build.platforms import Platform, local_platform
from shipyard.build.wheels import compatible_tags, fetch_command
from shipyard.errors import DeployError
from shipyard.fleet.fleet import hosts_platform
from shipyard.fleet.remote import Facts
from shipyard.host.protocol import PROTOCOL_VERSION, HelloReply
from shipyard.host.python import PythonInfo

X86 = Platform("linux-x86_64", "glibc 2.36")
ARM = Platform("linux-aarch64", "glibc 2.31")


def test_wheel_platforms_go_from_the_hosts_glibc_down_to_plain_linux() -> None:
    tags = X86.wheel_platforms()
    assert tags[0] == "manylinux_2_36_x86_64" and tags[-1] == "linux_x86_64"
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags
    arm = ARM.wheel_platforms()
    assert arm[0] == "manylinux_2_31_aarch64" and "manylinux2014_aarch64" in arm
    assert not any(t.startswith(("manylinux1_", "manylinux2010_")) for t in arm)


def test_uv_resolves_for_the_newest_manylinux_it_knows_at_or_below_the_hosts() -> None:
    assert X86.uv_target() == "x86_64-manylinux_2_36"
    assert ARM.uv_target() == "aarch64-manylinux_2_31"
    assert Platform("linux-aarch64", "glibc 2.30").uv_target() == "aarch64-manylinux_2_28"
    assert Platform("linux-x86_64", "glibc 2.45").uv_target() == "x86_64-manylinux_2_40"
    assert Platform("linux-x86_64", "").uv_target() is None  # musl or unknown
    assert Platform("linux-riscv64", "glibc 2.36").uv_target() is None


def test_compatible_tags_for_another_platform_and_python() -> None:
    accepted = compatible_tags(PythonInfo("python3.12", "3.12.3"), ARM)
    assert Tag("cp312", "cp312", "manylinux_2_17_aarch64") in accepted
    assert Tag("py3", "none", "any") in accepted
    assert not any("x86_64" in tag.platform for tag in accepted)
    assert Tag("cp311", "cp311", "manylinux_2_17_aarch64") not in accepted


def test_fetch_command_builds_here_and_downloads_for_elsewhere(tmp_path: Path) -> None:
    own = PythonInfo(sys.executable, ".".join(map(str, sys.version_info[:3])))
    here = fetch_command(tmp_path, tmp_path / "r.txt", own, local_platform()).argv
    assert here[1:4] == ("-m", "pip", "wheel") and "--platform" not in here
    there = fetch_command(tmp_path, tmp_path / "r.txt", PythonInfo("python3.12", "3.12.0"), ARM)
    argv = there.argv
    assert argv[3] == "download" and argv[argv.index("--only-binary") + 1] == ":all:"
    assert argv[argv.index("--python-version") + 1] == "3.12"
    platforms = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--platform"]
    assert platforms == ARM.wheel_platforms()
    # another Python here, same platform: published wheels only, for that Python
    other = fetch_command(tmp_path, tmp_path / "r.txt", PythonInfo("python3.12", "3.12.0"), None)
    assert other.argv[3] == "download" and "--platform" not in other.argv


def test_facts_carry_the_c_library() -> None:
    facts = Facts.parse("python=3.11.2 linux-aarch64\nlibc=glibc 2.36\n")
    assert facts.wheel_platform == Platform("linux-aarch64", "glibc 2.36")


def test_a_fleet_of_mixed_platforms_is_refused_before_any_upload() -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    def hello(platform: str, libc: str) -> HelloReply:
        return HelloReply(
            protocol=PROTOCOL_VERSION, version="0", runtime="", interpreter="", python="3.11.2",
            platform=platform, libc=libc, user="root", wheels={}, artifacts=[],
        )  # fmt: skip

    hosts = [Named("web1"), Named("web2")]
    same = {h.name: hello("linux-aarch64", "glibc 2.31") for h in hosts}
    assert hosts_platform(hosts, same) == ARM  # type: ignore[arg-type]
    mixed = {**same, "web2": hello("linux-x86_64", "glibc 2.36")}
    with pytest.raises(DeployError, match=r"different platforms .*web1.*web2"):
        hosts_platform(hosts, mixed)  # type: ignore[arg-type]
