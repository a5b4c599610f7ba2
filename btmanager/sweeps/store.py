"""What the registry says about sweeps: their list, and how far each one has got."""

from __future__ import annotations

from typing import Any

from btmanager.registry.db import Registry
from btmanager.registry.model import STATUSES


def counts(registry: Registry, sweep_id: str) -> dict[str, int]:
    """The sweep's runs by status (every status present, zeros included); one index scan."""
    found = dict.fromkeys(STATUSES, 0)
    for row in registry.rows(
        "SELECT status, COUNT(*) FROM runs WHERE sweep_id = ? GROUP BY status", (sweep_id,)
    ):
        found[str(row[0])] = int(row[1])
    return found


def list_sweeps(registry: Registry) -> list[dict[str, Any]]:
    """Every sweep, newest first, with its runs counted by status."""
    sweeps: dict[str, dict[str, Any]] = {}
    for row in registry.rows(
        "SELECT sweep_id, script_path, created_at, count, max_parallel FROM sweeps"
        " ORDER BY created_at DESC, rowid DESC"
    ):
        sweeps[str(row[0])] = {
            "sweep_id": str(row[0]),
            "script_path": row[1],
            "created_at": row[2],
            "count": int(row[3]),
            "max_parallel": row[4],
            "by_status": dict.fromkeys(STATUSES, 0),
        }
    for row in registry.rows(
        "SELECT sweep_id, status, COUNT(*) FROM runs WHERE sweep_id IS NOT NULL"
        " GROUP BY sweep_id, status"
    ):
        sweep = sweeps.get(str(row[0]))
        if sweep is not None:
            sweep["by_status"][str(row[1])] = int(row[2])
    return list(sweeps.values())
