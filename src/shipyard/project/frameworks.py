"""What the web frameworks' apps are, by the names that make them: the data appscan reads
code with."""

# What a framework's app is: (top-level package, the callable's name) -> (framework, kind).
# kind: 'wsgi', 'asgi', or 'aiohttp' (aiohttp's own worker runs it). A callable whose
# qualified name says ASGI (falcon.asgi.App) is ASGI whatever this table says.
CONSTRUCTORS: dict[tuple[str, str], tuple[str, str]] = {
    ("flask", "Flask"): ("flask", "wsgi"),
    ("apiflask", "APIFlask"): ("flask", "wsgi"),
    ("quart", "Quart"): ("quart", "asgi"),
    ("fastapi", "FastAPI"): ("fastapi", "asgi"),
    ("starlette", "Starlette"): ("starlette", "asgi"),
    ("litestar", "Litestar"): ("litestar", "asgi"),
    ("starlite", "Starlite"): ("litestar", "asgi"),
    ("aiohttp", "Application"): ("aiohttp", "aiohttp"),
    ("falcon", "App"): ("falcon", "wsgi"),
    ("falcon", "API"): ("falcon", "wsgi"),
    ("bottle", "Bottle"): ("bottle", "wsgi"),
    ("bottle", "default_app"): ("bottle", "wsgi"),
    ("django", "get_wsgi_application"): ("django", "wsgi"),
    ("django", "get_asgi_application"): ("django-asgi", "asgi"),
}
# Adapters whose name says the protocol they wrap, not the one they serve.
ADAPTERS = {
    "WSGIMiddleware": "asgi",  # starlette's, a2wsgi's, uvicorn's: a WSGI app served over ASGI
    "WsgiToAsgi": "asgi",  # asgiref's
    "ASGIMiddleware": "wsgi",  # a2wsgi's: an ASGI app served over WSGI
    "ProtocolTypeRouter": "asgi",  # Django Channels' asgi.py
}
# Top-level packages that make an app: the framework a module importing them is written for.
FRAMEWORKS = {
    "django": "django",
    "apiflask": "flask",
    "fastapi": "fastapi",
    "litestar": "litestar",
    "starlite": "litestar",
    "quart": "quart",
    "flask": "flask",
    "starlette": "starlette",
    "aiohttp": "aiohttp",
    "falcon": "falcon",
    "bottle": "bottle",
    "pyramid": "pyramid",
    "socketio": "socketio",
    "engineio": "socketio",
}
FRAMEWORK_KIND = {
    "django": "wsgi",
    "fastapi": "asgi",
    "litestar": "asgi",
    "quart": "asgi",
    "flask": "wsgi",
    "starlette": "asgi",
    "aiohttp": "aiohttp",
    "falcon": "wsgi",
    "bottle": "wsgi",
    "pyramid": "wsgi",
}
# Packages whose `app` objects are no web app (a task queue's, a command line's).
NOT_APPS = {"celery", "typer", "click", "dramatiq", "huey", "rq", "arq", "faust"}
