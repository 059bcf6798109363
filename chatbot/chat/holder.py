"""Which process writes a live reply, and whether that process is gone.

A live reply's lease (``lease_until``) tells other servers when its writer stopped renewing it;
that takes up to ``STREAM_LEASE_SECONDS``. A server on the same machine can know sooner: the row
also names its writer (``lease_holder``: kernel boot, pid namespace, pid and the process's start
time), and when that process no longer exists, nobody writes the reply any more. So a server
killed hard and started again shows its cut replies as interrupted (with Retry) at once, not 30 s
later. Outside Linux, or for a writer on another machine or in another container, nothing is
known here and the lease decides.
"""

from __future__ import annotations

import os
import secrets
from functools import cache


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


@cache
def _machine() -> str | None:
    """This kernel's boot and this process's pid namespace: where a pid means one process."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}:{namespace}" if boot else None


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None if there is none."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # (after the command name, which may hold spaces)
    return fields[19] if len(fields) > 19 else None


_mine: tuple[int, str | None] | None = None


def this_process() -> str | None:
    """The name a reply written by this process carries; None where processes can't be told."""
    global _mine
    pid = os.getpid()
    if _mine is None or _mine[0] != pid:  # (a forked worker is a new process)
        machine, started = _machine(), _started(pid)
        _mine = (pid, f"{machine}/{pid}/{started}" if machine and started else None)
    return _mine[1]


def new_token() -> str:
    """A turn's own name for the reply it writes: this process, and a random part that no other
    turn shares. It is part of the reply's fence, so a turn can never write a row that merely
    got its reply's id back (SQLite reuses the ids of deleted rows)."""
    return f"{this_process() or ''}#{secrets.token_hex(8)}"


def gone(holder: str | None) -> bool:
    """True only when ``holder`` was a process of this machine and namespace that has ended."""
    if not holder:
        return False
    place, pid, started = _split(holder.split("#", 1)[0])
    if place is None or place != _machine():
        return False
    return _started(pid) != started


def _split(holder: str) -> tuple[str | None, int, str]:
    try:
        place, pid, started = holder.rsplit("/", 2)
        return place, int(pid), started
    except ValueError:
        return None, 0, ""
