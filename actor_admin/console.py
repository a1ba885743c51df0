"""The console a command talks to: errors an operator can fix, progress lines, and the signals a person
sends (Ctrl-C, ``systemctl stop``).

A leaf module: the command line (:mod:`actor_admin.cli`), the commands (:mod:`actor_admin.commands`)
and the composition root (:mod:`actor_admin.node`) all use it, and it imports none of them.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator

import trio

log = logging.getLogger(__name__)


class CommandError(Exception):
    """An error for the operator: printed as-is, exit status 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def say(text: str) -> None:
    """Progress for a person at a terminal (stderr, so stdout stays clean for tools)."""
    print(text, file=sys.stderr, flush=True)


async def wait_for_signal(stop: trio.Event) -> None:
    """Set ``stop`` on the first SIGINT/SIGTERM, and keep absorbing later ones until cancelled."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await watch_signals(signals, stop)


async def watch_signals(signals: AsyncIterator[int], stop: trio.Event) -> None:
    """The first SIGINT/SIGTERM starts the graceful stop; later ones (a second Ctrl-C, the process
    group's copy) are absorbed so cleanup finishes instead of ending in a traceback."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.info("received %s again; still stopping (deadline applies)", name)
        else:
            log.info("received %s, shutting down", name)
            stop.set()
