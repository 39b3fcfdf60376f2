"""What a failed health check shows of a crashed server's output."""

from __future__ import annotations

from shipyard.host.crash_output import excerpt

WORKER = """\
[2026-11-25 10:00:00 +0000] [10] [INFO] Starting gunicorn 23.0.0
[2026-11-25 10:00:00 +0000] [11] [ERROR] Exception in worker process
Traceback (most recent call last):
  File "/r/venv/lib/python3.11/site-packages/gunicorn/arbiter.py", line 608, in spawn_worker
    worker.init_process()
  File "/r/venv/lib/python3.11/site-packages/flaskr/views.py", line 40, in <module>
    raise RuntimeError("boom at import")
RuntimeError: boom at import
[2026-11-25 10:00:00 +0000] [11] [INFO] Worker exiting (pid: 11)
"""
HALT = """\
Traceback (most recent call last):
  File "/r/venv/lib/python3.11/site-packages/gunicorn/arbiter.py", line 270, in run
    handler()
gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/r/venv/bin/gunicorn", line 10, in <module>
    sys.exit(run())
gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>
"""


def test_the_apps_traceback_is_kept_and_gunicorns_halt_dropped() -> None:
    lines = excerpt((WORKER + HALT) * 3, lines=12)
    assert "RuntimeError: boom at import" in lines
    assert not any("HaltServer" in line or "During handling" in line for line in lines)
    assert lines[-1].endswith("Worker exiting (pid: 11)")


def test_app_chains_and_plain_output_are_kept() -> None:
    chained = (
        "Traceback (most recent call last):\n  File x\nKeyError: 'DB'\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n  File y\nRuntimeError: no database\nbye\n"
    )
    lines = excerpt(chained)
    assert lines[2] == "KeyError: 'DB'" and "RuntimeError: no database" in lines
    assert lines[-1] == "bye"
    assert excerpt("a\nb\nc", lines=2) == ["b", "c"]
