"""Finishing a command's last step in a detached child, so that the command returns at once."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path


def detach(work: Callable[[], None], log: Path) -> None:
    """Run `work` in a child process that nobody waits for; this process goes on at once.

    The child inherits every open descriptor, the app's deploy lock among them: the lock is
    held until the child is done too, so a next deploy of the app waits for it. The child's
    output goes to `log`, never to the caller's terminal or pipes, since a caller reading
    this command's output until EOF would otherwise wait for the child as well. Where no
    child can be made, `work` runs here.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        work()
        return
    if pid:
        return
    code = 1
    try:
        os.setsid()  # no terminal: a Ctrl-C or a closed terminal does not stop it half-way
        null = os.open(os.devnull, os.O_RDWR)
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError:
            out = null  # the work matters more than its log
        for target, source in ((0, null), (1, out), (2, out)):
            os.dup2(source, target)
        work()
        code = 0
    except BaseException:
        # straight to the descriptor: a lock inside sys.stderr may have been held by another
        # of the parent's threads at the fork, and is never released in the child
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        report = f"{stamp} pid {os.getpid()}: finishing in the background failed:\n"
        os.write(2, (report + traceback.format_exc()).encode(errors="replace"))
    finally:
        os._exit(code)  # never return into the parent's frames (its lock, its exit handlers)
