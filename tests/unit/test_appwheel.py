"""The app wheel's build: the backend's extra requirements are asked once per build config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from shipyard.build.appwheel import extra_build_requires

if TYPE_CHECKING:
    from pyproject_hooks import BuildBackendHookCaller


class CountingHooks:
    def __init__(self, answer: list[str]) -> None:
        self.answer = answer
        self.calls = 0

    def get_requires_for_build_wheel(self) -> list[str]:
        self.calls += 1
        return self.answer


def ask(
    hooks: CountingHooks, project: Path, env: Path, backend_path: list[str] | None = None
) -> list[str]:
    caller = cast("BuildBackendHookCaller", hooks)
    return extra_build_requires(caller, project, env, "setuptools.build_meta", backend_path)


def test_asked_once_per_build_config(tmp_path: Path) -> None:
    project, env = tmp_path / "app", tmp_path / "env"
    project.mkdir()
    env.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    hooks = CountingHooks(["wheel"])
    assert ask(hooks, project, env) == ["wheel"]
    assert ask(hooks, project, env) == ["wheel"]
    assert hooks.calls == 1

    (project / "app.py").write_text("x = 1\n")  # code is not build config
    assert ask(hooks, project, env) == ["wheel"] and hooks.calls == 1

    (project / "setup.py").write_text("from setuptools import setup\nsetup(setup_requires=['x'])\n")
    hooks.answer = ["wheel", "x"]
    assert ask(hooks, project, env) == ["wheel", "x"]
    assert hooks.calls == 2


def test_an_in_tree_backend_is_asked_every_time(tmp_path: Path) -> None:
    project, env = tmp_path / "app", tmp_path / "env"
    project.mkdir()
    env.mkdir()
    hooks = CountingHooks([])
    for _ in range(2):
        assert ask(hooks, project, env, backend_path=["_build"]) == []
    assert hooks.calls == 2


def test_a_damaged_answer_is_asked_again(tmp_path: Path) -> None:
    project, env = tmp_path / "app", tmp_path / "env"
    project.mkdir()
    env.mkdir()
    hooks = CountingHooks(["wheel"])
    ask(hooks, project, env)
    for answer in (env / "requires-for-wheel").iterdir():
        answer.write_text('{"not": "a list"}')
    assert ask(hooks, project, env) == ["wheel"] and hooks.calls == 2
