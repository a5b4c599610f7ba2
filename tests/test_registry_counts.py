"""Selection counts of a long-lived read-only registry connection stay exact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from btmanager.registry.db import Registry
from btmanager.registry.model import Selection
from tests.conftest import BtRunner
from tests.helpers import write_script


def test_kept_counts_follow_commits_of_other_connections(bt: BtRunner) -> None:
    write_script(bt.cwd, "noop.py", "print('hi')\n")
    for _ in range(3):
        assert bt("run", "noop.py", "--no-validate").code == 0
    db_path = bt.results / "bt.sqlite3"
    reader = Registry(db_path, create=False, readonly=True)
    writer = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert reader.select(Selection(), 1)[0] == 3
        assert reader.select(Selection(status="completed"), 1)[0] == 3
        assert reader.select(Selection(), 1)[0] == 3  # kept
        writer.execute("UPDATE runs SET status = 'failed' WHERE seq = (SELECT MIN(seq) FROM runs)")
        assert reader.select(Selection(status="completed"), 1)[0] == 2
        assert reader.select(Selection(status="failed"), 1)[0] == 1
        writer.execute("DELETE FROM runs WHERE status = 'failed'")
        assert reader.select(Selection(), 1)[0] == 2
        assert bt("run", "noop.py", "--no-validate").code == 0
        total, runs = reader.select(Selection(), None)
        assert total == len(runs) == 3
    finally:
        writer.close()
        reader.close()


def test_offset_skips_the_newest(bt: BtRunner, tmp_path: Path) -> None:
    write_script(bt.cwd, "noop.py", "print('hi')\n")
    for _ in range(4):
        assert bt("run", "noop.py", "--no-validate").code == 0
    with Registry(bt.results / "bt.sqlite3", create=False, readonly=True) as registry:
        _, everything = registry.select(Selection(), None)
        assert registry.select(Selection(), 2, 1)[1] == everything[1:3]
        assert registry.select(Selection(), None, 3)[1] == everything[3:]
        assert registry.select(Selection(), 2, 10) == (4, [])
