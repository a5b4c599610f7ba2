"""The notebook API, used the way a notebook would: a fresh interpreter, `import btmanager`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.many_support import expected_pnl, write_metrics_script
from tests.queue_support import QueueLab, lab_for


@dataclass
class World:
    lab: QueueLab
    sweep_id: str
    run_ids: list[str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with lab_for(tmp_path_factory.mktemp("api")) as lab:
        write_metrics_script(lab.cwd)
        result = lab.bt(
            "sweep", "metrics.py", "-p", "a=1,2", "-p", "b=0,10,20", "-p", "c=x",
            "--wait", "--json", timeout=180,
        )  # fmt: skip
        assert result.code == 0, result.stdout + result.stderr
        yield World(lab, result.json()["sweep_id"], result.json()["run_ids"])


def notebook(code: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    """Run `code` in a fresh interpreter; it prints one JSON document, returned here."""
    full_env = dict(env if env is not None else os.environ)
    full_env.pop("BT_DB", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_import_is_cheap_and_pulls_in_no_pandas(tmp_path: Path) -> None:
    found = notebook(
        """
        import json, sys
        before = set(sys.modules)
        import btmanager
        added = sorted(set(sys.modules) - before)
        print(json.dumps({"added": added, "api": [btmanager.runs.__name__,
            btmanager.status.__name__, btmanager.pnl.__name__, btmanager.trades.__name__,
            btmanager.validate.__name__]}))
        """,
        tmp_path,
    )
    assert found["added"] == ["btmanager"]
    assert found["api"] == ["runs", "status", "pnl", "trades", "validate"]


def test_runs_is_the_compare_table(world: World) -> None:
    found = notebook(
        f"""
        import json, sys
        import btmanager
        frame = btmanager.runs(sweep={world.sweep_id!r})
        assert "pandas" in sys.modules
        top = btmanager.runs(sweep={world.sweep_id[:9]!r}, sort="-sharpe_ratio", top=2,
                             all_params=True)
        print(json.dumps({{
            "index": frame.index.name, "ids": list(frame.index),
            "columns": list(frame.columns),
            "dtypes": {{name: str(dtype) for name, dtype in frame.dtypes.items()}},
            "a": frame["a"].tolist(), "b": frame["b"].tolist(),
            "sharpe": frame["sharpe_ratio"].tolist(),
            "top": [list(row) for row in top[["a", "b"]].itertuples(index=False)],
        }}))
        """,
        world.lab.cwd,
        world.lab.env,
    )
    assert found["index"] == "run_id" and found["ids"] == world.run_ids
    assert found["columns"] == [
        "label", "a", "b", "status", "duration_seconds",
        "total_pnl", "sharpe_ratio", "max_drawdown", "win_rate", "num_trades",
    ]  # fmt: skip
    assert found["dtypes"]["a"] == "int64" and found["dtypes"]["b"] == "int64"
    assert found["dtypes"]["sharpe_ratio"] == "float64"
    assert found["a"] == [1, 1, 1, 2, 2, 2] and found["b"] == [0, 10, 20, 0, 10, 20]
    assert found["sharpe"] == [1.0, 2.0, 3.0, 2.0, 3.0, 4.0]
    assert found["top"] == [[2, 20], [1, 20]]


def test_status_pnl_trades_and_validate(world: World, tmp_path: Path) -> None:
    run_id = world.run_ids[4]  # a=2, b=10
    empty = tmp_path / "empty"
    empty.mkdir()
    found = notebook(
        f"""
        import json
        import btmanager
        import btmanager.validation, btmanager.commands.validate  # must not shadow validate
        results = {str(world.lab.results)!r}
        status = btmanager.status({run_id[:-1]!r}, results_dir=results)
        pnl = btmanager.pnl({run_id!r}, results_dir=results)
        trades = btmanager.trades({run_id!r}, results_dir=results)
        run_report = btmanager.validate({run_id!r}, results_dir=results)
        folder_report = btmanager.validate({str(empty)!r})
        print(json.dumps({{
            "status": status["status"], "run_id": status["run_id"],
            "pnl_index": str(pnl.index.dtype), "pnl_name": pnl.index.name,
            "dates": [str(day.date()) for day in pnl.index],
            "cumulative": pnl["cumulative_pnl"].tolist(),
            "trade_types": [str(trades[name].dtype) for name in ("entry_time", "exit_time")],
            "first_entry": str(trades["entry_time"].iloc[0]),
            "run_valid": run_report["valid"], "keys": sorted(run_report),
            "folder_valid": folder_report["valid"],
        }}))
        """,
        tmp_path,  # elsewhere, with no results folder: results_dir= says where
        {key: value for key, value in world.lab.env.items() if key != "BT_RESULTS_DIR"},
    )
    assert found["status"] == "completed" and found["run_id"] == run_id
    assert found["pnl_index"].startswith("datetime64") and found["pnl_name"] == "date"
    dates, cumulative = expected_pnl(2, 10)
    assert found["dates"] == dates and found["cumulative"] == cumulative
    assert all(kind.startswith("datetime64") for kind in found["trade_types"])
    assert found["first_entry"] == "2024-01-01 09:30:00"
    assert found["run_valid"] is True
    assert found["keys"] == ["errors", "file_checks", "valid", "warnings"]
    assert found["folder_valid"] is False


def test_mistakes_raise_bt_errors(world: World) -> None:
    found = notebook(
        """
        import json
        import btmanager
        from btmanager.errors import BtError
        caught = []
        for call in (lambda: btmanager.status("nope"), lambda: btmanager.runs(sweep="nope"),
                     lambda: btmanager.runs(sort="-nothing")):
            try:
                call()
            except BtError as exc:
                caught.append(str(exc))
        print(json.dumps(caught))
        """,
        world.lab.cwd,
        world.lab.env,
    )
    assert len(found) == 3 and "nope" in found[0] and "nothing" in found[2]
