"""Child processes that die with this one: ``dev``'s nodes and its embedded PostgreSQL and Redis.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is sent to a child when its parent dies,
however it dies, ``kill -9`` included. The kernel sends it when the *thread* that forked the child
exits, not the process: trio's worker threads come and go (an idle one exits after seconds), so a
child forked from one would be signalled soon after it started. :func:`on_lasting_thread` runs the
fork on a thread that lives as long as the process: the main thread when called there, else one
daemon thread kept for this.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

_PR_SET_PDEATHSIG = 1

T = TypeVar("T")

_jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_lasting: threading.Thread | None = None
_lasting_lock = threading.Lock()


def die_with_parent(signum: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``signum`` when this process dies, however it dies.

    Fork from a thread that lives as long as the process (:func:`on_lasting_thread`).
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def on_lasting_thread(fn: Callable[[], T]) -> T:
    """``fn()`` on a thread that lives as long as the process (for forking children that die with it)."""
    if threading.current_thread() is threading.main_thread():
        return fn()
    done: Future[T] = Future()

    def job() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # handed to the caller, re-raised there
            done.set_exception(exc)

    _jobs.put(job)
    _ensure_lasting_thread()
    return done.result()


def _ensure_lasting_thread() -> None:
    global _lasting
    with _lasting_lock:
        if _lasting is None:
            _lasting = threading.Thread(target=_serve_jobs, name="actor-admin-children", daemon=True)
            _lasting.start()


def _serve_jobs() -> None:
    while True:
        _jobs.get()()
