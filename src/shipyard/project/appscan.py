"""The web apps a project's modules make, read with `ast` (never imported): a framework's app,
one wrapped in middleware or adapted to another protocol, one a factory returns, one imported
from the project's own package; each with its framework and what serves it."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from shipyard.project.djangodetect import module_file
from shipyard.project.frameworks import (
    ADAPTERS,
    CONSTRUCTORS,
    FRAMEWORK_KIND,
    FRAMEWORKS,
    NOT_APPS,
)

ENTRY_NAMES = ("app", "application")
# The factory names taken for one even when the scan cannot see what they return.
GUESSED_FACTORIES = ("create_app", "make_app")
FACTORY_RE = re.compile(
    r"^(create|make|build|get|init|new|setup)_?(app|application|api|server)$|^app_factory$"
)


@dataclass(frozen=True)
class App:
    """A web app object: its framework, what serves it ('wsgi', 'asgi', 'aiohttp'), how the
    code makes it, and the file that makes it."""

    framework: str
    kind: str
    how: str
    made_in: Path
    guessed: bool = False  # made by a call nothing tells of, in a module importing `framework`


@dataclass(frozen=True)
class Factory:
    """A module-level function that returns an app; `is_entry` when it is named as a
    factory and takes no required argument, as a server calls it."""

    app: App
    is_entry: bool


Value = App | Factory


@dataclass(frozen=True)
class ModuleApps:
    """The module-level names of one module that hold an app or a factory."""

    path: Path
    names: dict[str, Value]
    imported: frozenset[str]  # of those, the ones the module imports from another


class Project:
    """Reads the modules under `root`, each once, following imports within the project."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._modules: dict[str, ModuleApps | None] = {}

    def module(self, name: str, path: Path | None = None) -> ModuleApps | None:
        if name in self._modules:
            return self._modules[name]
        self._modules[name] = None  # an import cycle reads as "nothing there"
        path = path or module_file(self.root, name)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            return None
        found = _Module(self, name, path, tree).scan()
        self._modules[name] = found
        return found

    def resolve(self, qualified: str) -> Value | None:
        """What `pkg.module.name` holds, when `pkg.module` is one of the project's modules."""
        module, _, name = qualified.rpartition(".")
        if not module or not module_file(self.root, module).is_file():
            return None
        found = self.module(module)
        return found.names.get(name) if found is not None else None


@dataclass
class _Module:
    project: Project
    name: str
    path: Path
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    star: list[str] = field(default_factory=list)  # `from x import *` modules
    values: dict[str, Value] = field(default_factory=dict)
    imported: set[str] = field(default_factory=set)
    subclasses: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # -> fw, kind, base

    def scan(self) -> ModuleApps:
        body = list(_statements(self.tree.body))
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._record_import(node)
        for node in body:
            if isinstance(node, ast.ClassDef):
                self._record_subclass(node)
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                app = self._returned(node) or self._guessed_factory(node)
                if app is not None:
                    self.values[node.name] = Factory(app, _is_factory(node))
        for node in body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                self._assign(targets, node.value, self.values, module_level=True)
        for local in self.imports:
            if local not in self.values:
                value = self.project.resolve(self.imports[local])
                if value is not None:
                    self.values[local] = value
                    self.imported.add(local)
        return ModuleApps(self.path, dict(self.values), frozenset(self.imported))

    def framework(self) -> str:
        """The framework the module imports, the most specific first (FastAPI's modules
        often import from starlette too)."""
        tops = {q.split(".")[0] for q in self.imports.values()} | {
            s.split(".")[0] for s in self.star
        }
        return next((fw for top, fw in FRAMEWORKS.items() if top in tops), "")

    def _record_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.imports[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    self.imports[top] = top
            return
        base = self._absolute(node.module or "", node.level)
        for alias in node.names:
            if alias.name == "*":
                self.star.append(base)
            else:
                self.imports[alias.asname or alias.name] = f"{base}.{alias.name}".lstrip(".")

    def _absolute(self, module: str, level: int) -> str:
        if not level:
            return module
        package = (
            self.name.split(".") if self.path.name == "__init__.py" else self.name.split(".")[:-1]
        )
        if level > 1:
            package = package[: len(package) - (level - 1)]
        return ".".join([*package, module] if module else package)

    def _returned(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> App | None:
        local: dict[str, Value] = {}
        for node in _statements(function.body, into_functions=False):
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._record_import(node)  # imported late, as factories often do
            elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                self._assign(targets, node.value, local, module_level=False)
            elif isinstance(node, ast.Return) and node.value is not None:
                value = self._value(node.value, local)
                if isinstance(value, App):
                    return value
        return None

    def _record_subclass(self, node: ast.ClassDef) -> None:
        """`class App(Flask)`: the module's own name for a framework's app class."""
        for base in node.bases:
            qualified = self._qualified(base)
            known = self._constructor(qualified.partition(".")[0], qualified.rpartition(".")[2])
            if known is not None:
                self.subclasses[node.name] = (*known, qualified)
                return

    def _guessed_factory(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> App | None:
        """A factory by its name in a module importing a framework, whose app the scan cannot
        follow (made by a helper): taken for that framework's."""
        framework = self.framework()
        if function.name not in GUESSED_FACTORIES or framework not in FRAMEWORK_KIND:
            return None
        if not _is_factory(function):
            return None
        how = f"an app of the {framework} the module imports (taken for it)"
        return App(framework, FRAMEWORK_KIND[framework], how, self.path, guessed=True)

    def _assign(
        self, targets: Sequence[ast.expr], expr: ast.expr, env: dict[str, Value], module_level: bool
    ) -> None:
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if not names:
            return  # `app.wsgi_app = ProxyFix(app.wsgi_app)` changes an app, makes no entry
        value = self._value(expr, env)
        if value is None and module_level and any(n in ENTRY_NAMES for n in names):
            value = self._guessed(expr)
        for name in names:
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value

    def _guessed(self, expr: ast.expr) -> App | None:
        """`app = anything(...)` in a module importing a framework: taken for its app,
        unless the callable is a known other kind of `app` (a task queue's)."""
        framework = self.framework()
        if not isinstance(expr, ast.Call) or framework not in FRAMEWORK_KIND:
            return None
        called = self._qualified(expr.func)
        if called.split(".")[0] in NOT_APPS:
            return None
        how = f"{called}(...), in a module that imports {framework} (taken for its app)"
        return App(framework, FRAMEWORK_KIND[framework], how, self.path, guessed=True)

    def _value(self, expr: ast.expr, env: dict[str, Value]) -> Value | None:
        if isinstance(expr, ast.Name):
            return self._lookup(expr.id, env)
        if isinstance(expr, ast.Await):
            return self._value(expr.value, env)
        if isinstance(expr, ast.Call):
            return self._called(expr, env)
        return None

    def _lookup(self, name: str, env: dict[str, Value]) -> Value | None:
        if name in env:
            return env[name]
        if name in self.values:
            return self.values[name]
        if name in self.imports:
            return self.project.resolve(self.imports[name])
        return None

    def _called(self, call: ast.Call, env: dict[str, Value]) -> App | None:
        func = call.func
        made = self._value(func, env) if isinstance(func, ast.Name) else None
        qualified = self._qualified(func)
        if made is None and isinstance(func, ast.Attribute):
            made = self.project.resolve(qualified)
        if isinstance(made, Factory):
            origin = qualified.rpartition(".")[0]
            where = f" from {origin}" if origin else ""
            how = f"{qualified.rpartition('.')[2]}(){where} returns {made.app.how}"
            return replace(made.app, how=how)
        top, _, _ = qualified.partition(".")
        last = qualified.rpartition(".")[2]
        wrapped = next(self._apps_in(call, env), None)
        if last in ADAPTERS:
            kind = ADAPTERS[last]
            return self._adapter(qualified, kind, wrapped)
        known = self._constructor(top, last)
        if qualified in self.subclasses:
            framework, kind, base = self.subclasses[qualified]
            return App(framework, kind, f"{qualified}(...), a {base} subclass", self.path)
        if known is not None:
            framework, kind = known
            said = _kind_in_name(qualified) if kind != "aiohttp" else ""
            kind = said or kind
            if framework == "django" and kind == "asgi":
                framework = "django-asgi"
            return App(framework, kind, f"{qualified}(...)", self.path)
        said = _kind_in_name(qualified)
        if said:
            return self._adapter(qualified, said, wrapped)
        if wrapped is not None:  # middleware: the app it wraps, served the same way
            how = f"{qualified}(...) over {wrapped.how}"
            return replace(wrapped, how=how)
        return None

    def _adapter(self, qualified: str, kind: str, wrapped: App | None) -> App:
        if wrapped is not None:
            how = f"{qualified}(...) serves {wrapped.how} over {kind.upper()}"
            return App(wrapped.framework, kind, how, wrapped.made_in)
        framework = FRAMEWORKS.get(qualified.split(".")[0]) or self.framework() or "python"
        if framework == "django" and kind == "asgi":
            framework = "django-asgi"
        return App(framework, kind, f"{qualified}(...), an {kind.upper()} app", self.path)

    def _constructor(self, top: str, last: str) -> tuple[str, str] | None:
        if (top, last) in CONSTRUCTORS:
            return CONSTRUCTORS[(top, last)]
        if top == last and top not in self.imports:  # a bare name: from a `from x import *`?
            stars = {s.split(".")[0] for s in self.star}
            return next((v for (t, n), v in CONSTRUCTORS.items() if n == last and t in stars), None)
        return None

    def _apps_in(self, call: ast.Call, env: dict[str, Value]) -> Iterator[App]:
        """The apps among a call's arguments (a dict's values too: Channels' router)."""
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            items = [v for v in arg.values if v is not None] if isinstance(arg, ast.Dict) else [arg]
            for item in items:
                value = self._value(item, env)
                if isinstance(value, App):
                    yield value

    def _qualified(self, expr: ast.expr) -> str:
        """`web.Application` as `aiohttp.web.Application`, after the module's imports."""
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if isinstance(expr, ast.Call):
            return self._qualified(expr.func) + "()." + ".".join(reversed(parts))
        if not isinstance(expr, ast.Name):
            return ".".join(reversed(parts))
        return ".".join([self.imports.get(expr.id, expr.id), *reversed(parts)])


def _kind_in_name(qualified: str) -> str:
    """'asgi' or 'wsgi' when a callable's name says which it makes (SentryAsgiMiddleware,
    socketio.ASGIApp, make_wsgi_app), else its module's (opentelemetry...asgi.X); the last
    one said wins (WsgiToAsgi). "" when none says."""
    for part in reversed(qualified.lower().split(".")):
        found = [(part.rfind(kind), kind) for kind in ("asgi", "wsgi") if kind in part]
        if found:
            return max(found)[1]
    return ""


def _is_factory(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A factory's name, callable with no argument (as servers call it)."""
    args = function.args
    required = len(args.posonlyargs) + len(args.args) - len(args.defaults)
    kw_required = sum(default is None for default in args.kw_defaults)
    return bool(FACTORY_RE.match(function.name)) and required == 0 and kw_required == 0


def _statements(body: list[ast.stmt], into_functions: bool = True) -> Iterator[ast.stmt]:
    """A body's statements in order, those of if/try/with blocks too, not those run only
    as a script (`if __name__ == "__main__":`) nor, unless asked, nested functions'."""
    for node in body:
        if isinstance(node, ast.If):
            if _is_main_guard(node.test):
                continue
            yield from _statements(node.body, into_functions)
            yield from _statements(node.orelse, into_functions)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse):
                yield from _statements(block, into_functions)
        elif isinstance(node, ast.With | ast.AsyncWith):
            yield from _statements(node.body, into_functions)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not into_functions:
            continue
        else:
            yield node


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )
