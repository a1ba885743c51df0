"""Run a command with its stdout and stderr connected to journald the way systemd connects a unit's
(``StandardOutput=journal``, ``StandardError=journal``, ``SyslogLevelPrefix=yes``): the stream socket of
a journald namespace, the stream header systemd writes, and ``$JOURNAL_STREAM`` naming the socket.

    python tests/ops/_unit.py NAMESPACE actor-admin.service -- COMMAND [ARGS…]

A script (not imported by the process it starts), so the command's environment stays its own.
"""

from __future__ import annotations

import os
import socket
import sys


def connect(namespace: str, unit: str) -> socket.socket:
    """A stream to journald in the given namespace, announced as ``unit`` (it becomes ``_SYSTEMD_UNIT``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(f"/run/systemd/journal.{namespace}/stdout")
    sock.shutdown(socket.SHUT_RD)
    identifier = unit.removesuffix(".service")
    # identifier, unit, default priority, level prefix on, no forwarding to syslog, kmsg or console
    sock.sendall(f"{identifier}\n{unit}\n6\n1\n0\n0\n0\n".encode())
    return sock


def journal_stream(fd: int) -> str:
    """The ``$JOURNAL_STREAM`` value systemd sets for a stderr connected to ``fd``."""
    stat = os.fstat(fd)
    return f"{stat.st_dev}:{stat.st_ino}"


def main(argv: list[str]) -> None:
    namespace, unit, separator, *command = argv
    assert separator == "--" and command, __doc__
    sock = connect(namespace, unit)
    os.dup2(sock.fileno(), 1)
    os.dup2(sock.fileno(), 2)
    os.environ["JOURNAL_STREAM"] = journal_stream(2)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
