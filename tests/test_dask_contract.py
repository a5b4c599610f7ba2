"""What `bt worker --dask` changes for everything else: no Dask import outside it, `host` and
`executor` on every run, one-line errors for bad addresses (no cluster needed)."""

from __future__ import annotations

import socket
import subprocess

from tests.conftest import BtRunner
from tests.helpers import BT, write_script
from tests.scripts import VALID


def test_read_commands_never_import_dask(bt: BtRunner) -> None:
    write_script(bt.cwd, "valid.py", VALID)
    assert bt("run", "valid.py", "--json").code == 0
    done = subprocess.run(
        [*BT[:1], "-X", "importtime", *BT[1:], "status", "latest", "--json"],
        env=bt.env,
        cwd=bt.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert imported, "no -X importtime output"
    assert not [name for name in imported if name.split(".")[0] in ("dask", "distributed")]


def test_local_runs_say_where_they_ran(bt: BtRunner) -> None:
    write_script(bt.cwd, "valid.py", VALID)
    result = bt("run", "valid.py", "--json")
    assert result.code == 0, result.stderr
    status = result.json()
    assert status["executor"] == "local"
    assert status["host"] == socket.gethostname()


def test_bad_dask_addresses_are_one_line_errors(bt: BtRunner) -> None:
    for address in ("local:0", "local:x", "local:100000", ""):
        result = bt("worker", "--dask", address)
        assert result.code == 2, (address, result.stderr)
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr
