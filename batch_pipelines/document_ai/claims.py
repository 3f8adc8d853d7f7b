"""Who holds a document job's runner claim, and whether that worker is dead.

A runner's claim (``document_jobs.runner_id`` with a lease) says which process works on a
job. The claim's id names the worker - ``<host>:<pid>:<token>``, the shape the engine's
executor uses for its owners - so a worker killed on this machine is known dead at once
(its pid is gone) instead of after its lease runs out: the user can resume the job right
away, and a new runner takes the claim over. A worker on another host, or one whose pid is
alive, is respected until its lease runs out (a lease that ran out is a dead worker
anywhere). Pure apart from ``pid_alive``, which is passed in.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

# The claim id is stored in a column of 100 characters: host, pid and a 12-hex token fit.
_HOST_CHARS = 60


@dataclass(frozen=True)
class ClaimHolder:
    host: str
    pid: int
    token: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def this_host() -> str:
    return socket.gethostname()[:_HOST_CHARS]


def new_runner_id(host: str | None = None, pid: int | None = None) -> str:
    """A claim id for this process (or the given host and pid)."""
    host = (host if host is not None else this_host())[:_HOST_CHARS]
    pid = pid if pid is not None else os.getpid()
    return f"{host}:{pid}:{uuid.uuid4().hex[:12]}"


def parse_runner_id(runner_id: str | None) -> ClaimHolder | None:
    """The worker a claim id names, or None for an id without host and pid (older runners)."""
    if not runner_id:
        return None
    parts = runner_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return ClaimHolder(parts[0], int(parts[1]), parts[2])


def pid_alive(pid: int) -> bool:
    """Is a process with this pid running on this machine (signal 0 probes without harm)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


@dataclass(frozen=True)
class ClaimState:
    """A job's claim as seen now: free, held by a live worker, or left by a dead one."""

    holder_id: str | None
    dead: bool
    why: str  # for messages: who holds it, or why it counts as dead

    @property
    def free(self) -> bool:
        return self.holder_id is None


def claim_state(
    runner_id: str | None,
    lease_expires_at: datetime | None,
    now: datetime,
    *,
    host: str,
    is_alive: Callable[[int], bool] = pid_alive,
) -> ClaimState:
    """Whether the claim ``runner_id`` (lease until ``lease_expires_at``) is held by a live
    worker, as seen from ``host`` at ``now``."""
    if not runner_id:
        return ClaimState(None, False, "no worker holds it")
    holder = parse_runner_id(runner_id)
    who = holder.describe() if holder else f"runner {runner_id}"
    if lease_expires_at is not None and lease_expires_at < now:
        return ClaimState(runner_id, True, f"the claim of {who} ran out")
    if holder is not None and holder.host == host[:_HOST_CHARS] and not is_alive(holder.pid):
        return ClaimState(runner_id, True, f"its worker ({who}) is no longer running")
    return ClaimState(runner_id, False, f"it is being worked by {who}")
