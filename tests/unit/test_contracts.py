"""The contracts between shipyard's packages (pyproject.toml [tool.importlinter]) hold, and
the checks behind them fail on a violation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "shipyard"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# Program entry points of their own, like the CLI: the agent's stdout is its protocol channel
# and its stderr reaches the deploying machine; a resident agent logs to its log file.
ENTRY_POINTS = {"host/agent.py", "host/resident.py"}
# Pure modules: computed from their arguments alone (package templates are part of the code).
PURE = [
    "spec",
    "plan.py",
    "host/render",
    "targets/export/kubernetes.py",
    "targets/export/workloads.py",
    "targets/export/nginx.py",
    "targets/export/image.py",
    "targets/export/containerfile.py",
]
# Calls that reach the file system, processes or the network.
IO_CALLS = {
    "open", "read_text", "read_bytes", "write_text", "write_bytes", "mkdir", "makedirs",
    "unlink", "rmdir", "remove", "rename", "iterdir", "glob", "rglob", "exists", "is_file",
    "is_dir", "stat", "lstat", "touch", "chmod", "chown", "symlink_to", "run", "Popen",
    "system", "listdir", "walk", "scandir", "connect", "urlopen",
}  # fmt: skip


def _modules(*parts: str) -> list[Path]:
    found: list[Path] = []
    for part in parts:
        path = PACKAGE / part
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def _calls(path: Path) -> list[tuple[str, int]]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            names.append((name, node.lineno))
    return names


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


def test_a_host_module_importing_the_build_breaks_its_contract(tmp_path: Path) -> None:
    """The same kind of contract on a package made to break it: lint-imports says so."""
    pkg = tmp_path / "src" / "demo"
    for sub in ("host", "build"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "host" / "agent.py").write_text("import demo.build\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = demo\n\n[importlinter:contract:host]\n"
        "name = host alone\ntype = forbidden\nsource_modules = demo.host\n"
        "forbidden_modules = demo.build\n"
    )
    done = _lint_imports(tmp_path, {"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin"})
    assert done.returncode == 1 and "demo.host.agent -> demo.build" in done.stdout, done.stdout


def test_nothing_below_the_cli_prints() -> None:
    """Code below the CLI sends progress events (events.py); only the CLI and the agent's
    entry points write to the terminal."""
    offenders = []
    for path in _modules("."):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cli/") or rel in ENTRY_POINTS:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                if any(n.split(".")[0] in ("click", "rich") for n in names):
                    offenders.append(f"{rel}:{node.lineno} imports a terminal UI")
        offenders += [f"{rel}:{line} prints" for name, line in _calls(path) if name == "print"]
    assert offenders == []


@pytest.mark.parametrize("part", PURE)
def test_pure_modules_do_no_io(part: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line} calls {name}()"
        for path in _modules(part)
        for name, line in _calls(path)
        if name in IO_CALLS
    ]
    assert offenders == []


def test_the_io_check_sees_a_file_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from pathlib import Path\nPath('x').read_text()\nopen('y')\n")
    assert {name for name, _ in _calls(sample)} & IO_CALLS == {"read_text", "open"}
