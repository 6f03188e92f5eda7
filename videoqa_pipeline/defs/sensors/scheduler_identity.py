"""The identity of the Dagster instance a sensor ticks in, as the job ledger records it.

A job's run lives in the run storage of the instance that requested it, so the identity that
matters is the run storage's: it is a random ID kept in that storage's key-value table, created
by the first tick that needs it. Two processes of one instance (the daemon and the webserver, or
several daemons on one shared run storage) read the same ID and so act as one scheduler; two
instances with their own storage (another ``DAGSTER_HOME``) have different IDs, whatever host or
process they run in. The ID is read on every tick (one key lookup), never cached, so a lost race
between two first ticks settles on the stored value at the next tick.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

import dagster as dg

#: Key of the instance's ID in its run storage's key-value table.
SCHEDULER_ID_KEY = "videoqa/scheduler_instance_id"


@dataclass(frozen=True)
class SchedulerIdentity:
    """Who is ticking: ``instance_id`` for the ledger, ``description`` for people."""

    instance_id: str
    description: str


def scheduler_identity(instance: dg.DagsterInstance) -> SchedulerIdentity:
    """The identity of ``instance`` (created and stored in its run storage on first use)."""
    storage = instance.run_storage
    instance_id = storage.get_cursor_values({SCHEDULER_ID_KEY}).get(SCHEDULER_ID_KEY)
    if not instance_id:
        storage.set_cursor_values({SCHEDULER_ID_KEY: uuid.uuid4().hex})
        instance_id = storage.get_cursor_values({SCHEDULER_ID_KEY})[SCHEDULER_ID_KEY]
    try:
        home = instance.root_directory
    except Exception:  # an instance without local artifact storage has no home to show
        home = "(no local DAGSTER_HOME)"
    return SchedulerIdentity(
        instance_id=instance_id,
        description=f"host {socket.gethostname()}, pid {os.getpid()}, DAGSTER_HOME {home}",
    )
