"""The setup and release commands `init` proposes, by their nature, read from the project.

A migration tool's upgrade applies only what is not applied yet, so it is safe on every
deploy: `release`. A Flask command that creates the database (`init-db` and the like) often
drops and recreates the tables, as the Flask tutorial's does: it is `setup`, run on the
first deploy only. Never the other way round.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

# Click command names (without '-' and '_') of commands that create an app's database.
INIT_DB_NAMES = {
    "initdb",
    "initdatabase",
    "initschema",
    "createdb",
    "createdatabase",
    "createall",
    "createtables",
    "createschema",
    "setupdb",
    "setupdatabase",
    "dbinit",
    "dbcreate",
}
CLICK_SUFFIXES = ("command", "cmd", "group", "grp")  # click drops these from a function's name
SAFE_TO_REPEAT = "safe to repeat, so on every deploy"


@dataclass(frozen=True)
class Proposed:
    command: str
    why: str


@dataclass(frozen=True)
class Commands:
    setup: Proposed | None = None
    release: Proposed | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClickCommand:
    name: str
    path: Path


def propose_commands(project: Path, framework: str, module: str, files: list[Path]) -> Commands:
    """The commands for an app of `framework` whose entry module is `module`; `files`: the
    Python files of its package."""
    if framework.startswith("django"):
        if (project / "manage.py").is_file():
            why = "a Django project: `migrate` applies the migrations not applied yet, "
            why += SAFE_TO_REPEAT
            return Commands(release=Proposed("python manage.py migrate --noinput", why))
        return Commands()
    trees = _parse(files)
    migrate = next((path for path, tree in trees.items() if _imports(tree, "flask_migrate")), None)
    release = None
    if framework == "flask" and migrate is not None:
        release = Proposed(
            f"flask --app {module} db upgrade",
            f"{_shown(project, migrate)} uses Flask-Migrate: `db upgrade` applies the "
            f"migrations not applied yet, {SAFE_TO_REPEAT}",
        )
    elif (project / "alembic.ini").is_file():
        release = Proposed(
            "alembic upgrade head",
            f"alembic.ini: `alembic upgrade head` applies the migrations not applied yet, "
            f"{SAFE_TO_REPEAT}",
        )
    init_db = next((c for c in _flask_commands(trees) if _squashed(c.name) in INIT_DB_NAMES), None)
    if framework != "flask" or init_db is None:
        return Commands(release=release)
    where = _shown(project, init_db.path)
    if release is not None:
        return Commands(
            release=release,
            notes=[
                f"`flask {init_db.name}` ({where}) is not proposed as `setup`: the migrations "
                "make the schema. Set `setup` yourself if it does more than that."
            ],
        )
    setup = Proposed(
        f"flask --app {module} {init_db.name}",
        f"{where} defines `flask {init_db.name}`, which creates the database: once, on the "
        "first deploy only (such commands often drop and recreate the tables, so never on "
        "every deploy)",
    )
    return Commands(setup=setup)


def _parse(files: list[Path]) -> dict[Path, ast.Module]:
    trees: dict[Path, ast.Module] = {}
    for path in files:
        try:
            trees[path] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
    return trees


def _imports(tree: ast.Module, top: str) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == top:
                return True
        elif isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == top for alias in node.names
        ):
            return True
    return False


def _flask_commands(trees: dict[Path, ast.Module]) -> list[ClickCommand]:
    """The top-level `flask` commands the package defines: on the app's own `cli` group, or
    plain click commands it adds there with `add_command`."""
    found: list[ClickCommand] = []
    plain: dict[str, tuple[str, Path]] = {}  # function -> (command name, file)
    added: list[tuple[str, str | None]] = []  # (function, name given to add_command)
    for path, tree in trees.items():
        blueprints = _blueprint_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for decorator in node.decorator_list:
                    kind = _command_decorator(decorator, blueprints)
                    if kind is None:
                        continue
                    name = _given_name(decorator) or _click_name(node.name)
                    if kind == "app":
                        found.append(ClickCommand(name, path))
                    else:
                        plain[node.name] = (name, path)
            elif _adds_to_app_cli(node, blueprints) and isinstance(node, ast.Call) and node.args:
                first = node.args[0]
                if isinstance(first, ast.Name):
                    added.append((first.id, _string(node.args[1]) if len(node.args) > 1 else None))
    for function, alias in added:
        if function in plain:
            name, path = plain[function]
            found.append(ClickCommand(alias or name, path))
    return found


def _command_decorator(decorator: ast.expr, blueprints: set[str]) -> str | None:
    """Which kind of click command `decorator` makes: "app" for `@app.cli.command(...)`,
    "plain" for `@click.command(...)`; None for any other (a blueprint's commands are grouped
    under its name, and those of another group under that group's)."""
    func = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(func, ast.Name):
        return "plain" if func.id == "command" else None
    if not isinstance(func, ast.Attribute) or func.attr != "command":
        return None
    owner = func.value
    if isinstance(owner, ast.Name):
        return "plain" if owner.id == "click" else None
    if isinstance(owner, ast.Attribute) and owner.attr == "cli":
        base = owner.value
        return None if isinstance(base, ast.Name) and base.id in blueprints else "app"
    return None


def _blueprint_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if called == "Blueprint":
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _given_name(decorator: ast.expr) -> str | None:
    if not isinstance(decorator, ast.Call):
        return None
    if decorator.args:
        return _string(decorator.args[0])
    return next((_string(k.value) for k in decorator.keywords if k.arg == "name"), None)


def _click_name(function: str) -> str:
    """The name click gives a command made from `function`."""
    name = function.lower().replace("_", "-")
    left, sep, suffix = name.rpartition("-")
    return left if sep and suffix in CLICK_SUFFIXES else name


def _string(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _adds_to_app_cli(node: ast.AST, blueprints: set[str]) -> bool:
    """`app.cli.add_command(...)`: not a blueprint's, nor another group's."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    owner = node.func.value
    if node.func.attr != "add_command" or not isinstance(owner, ast.Attribute):
        return False
    return owner.attr == "cli" and not (
        isinstance(owner.value, ast.Name) and owner.value.id in blueprints
    )


def _squashed(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _shown(project: Path, path: Path) -> str:
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)
