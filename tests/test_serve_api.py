"""`bt serve`'s HTTP API, driven through httpx against a real `bt serve` subprocess.

Most tests share one server (its start costs ~1 s); those that need another configuration
(rate limit, no token, other script folders, a shutdown) start their own.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import run_bt, wait_for, write_script
from tests.queue_support import QueueLab, lab_for
from tests.serve_support import TOKEN, Server, events, start_server, write_scripts

API = "/api/backtest"
STATUS_KEYS = {
    "run_id", "script_path", "params", "status", "created_at", "started_at", "completed_at",
    "output_dir", "exit_code", "error_message", "validation_results", "duration_seconds", "pid",
    "label", "priority", "peak_memory_bytes", "cpu_seconds",
}  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QueueLab, Server]]:
    with lab_for(tmp_path_factory.mktemp("serve")) as lab:
        write_scripts(lab.cwd)
        yield lab, start_server(lab, "--rate-limit", "10000/minute")


@pytest.fixture
def lab(shared: tuple[QueueLab, Server]) -> QueueLab:
    return shared[0]


@pytest.fixture
def server(shared: tuple[QueueLab, Server]) -> Server:
    return shared[1]


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def submit(client: httpx.Client, script: str = "valid.py", **body: Any) -> str:
    response = client.post(f"{API}/run", json={"script": script, **body})
    assert response.status_code == 202, response.text
    document = response.json()
    assert document == {
        "success": True,
        "run_id": document["run_id"],
        "status": "queued",
        "message": "Backtest queued for execution",
    }
    assert response.headers["location"] == f"{API}/status/{document['run_id']}"
    return str(document["run_id"])


def assert_error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    assert document["success"] is False
    assert isinstance(document["error"], str) and document["error"]
    for word in words:
        assert word.lower() in document["error"].lower(), document["error"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return document


# --- auth ---------------------------------------------------------------------------------


def test_every_endpoint_needs_the_token_but_health_and_the_page(server: Server) -> None:
    protected = [
        ("GET", f"{API}/list"),
        ("GET", f"{API}/status/latest"),
        ("GET", f"{API}/logs/latest"),
        ("GET", f"{API}/logs/latest/stream"),
        ("POST", f"{API}/validate/latest"),
        ("GET", f"{API}/results/latest"),
        ("GET", f"{API}/results/latest/trades.csv"),
        ("POST", f"{API}/cancel/latest"),
        ("POST", f"{API}/run"),
        ("POST", f"{API}/sweep"),
        ("GET", f"{API}/compare"),
        ("GET", f"{API}/plot/latest"),
        ("GET", "/openapi.json"),
        ("GET", "/api/no-such-endpoint"),
    ]
    with server.client(token=None) as anonymous, server.client(token="x" * 32) as wrong:
        for method, path in protected:
            missing = anonymous.request(method, path)
            assert_error(missing, 401, "token")
            assert missing.headers["www-authenticate"] == "Bearer"
            assert_error(wrong.request(method, path), 401, "bad token")
        basic = anonymous.get(f"{API}/list", headers={"Authorization": f"Basic {TOKEN}"})
        assert_error(basic, 401)
        bare = anonymous.get(f"{API}/list", headers={"Authorization": TOKEN})
        assert_error(bare, 401)
        # Open: the health check (without paths of this machine) and the page shell.
        health = anonymous.get("/api/health")
        assert health.status_code == 200
        assert set(health.json()) == {"status", "timestamp", "active_runs", "queued_runs"}
        page = anonymous.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/static/app.js"' in page.text
        for asset in ("/static/app.js", "/static/app.css", "/static/favicon.svg"):
            assert anonymous.get(asset).status_code == 200, asset
    with server.client() as right:
        assert right.get(f"{API}/list").status_code == 200
        full = right.get("/api/health").json()
        assert full["status"] == "healthy"
        assert {"registry", "results_dir", "max_parallel"} <= set(full)


def test_openapi_is_served_and_docs_need_no_internet(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    for path in (
        "/api/backtest/run", "/api/backtest/status/{run_id}", "/api/backtest/logs/{run_id}",
        "/api/backtest/logs/{run_id}/stream", "/api/backtest/validate/{run_id}",
        "/api/backtest/results/{run_id}", "/api/backtest/results/{run_id}/{name}",
        "/api/backtest/list", "/api/backtest/cancel/{run_id}", "/api/backtest/sweep",
        "/api/backtest/compare", "/api/backtest/plot/{run_id}", "/api/health",
    ):  # fmt: skip
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # Swagger UI would load from a CDN: not served at all.
    assert_error(client.get("/docs"), 404)
    assert_error(client.get("/redoc"), 404)


# --- runs -----------------------------------------------------------------------------------


def test_submit_status_list_logs_results_download_validate(
    server: Server, client: httpx.Client, lab: QueueLab
) -> None:
    run_id = submit(
        client, params={"capital": 100000, "flag": True, "ratio": 0.5, "name": "x y"}, label="api"
    )
    final = server.wait_status(client, run_id, ("completed", "failed", "cancelled"))
    assert final["status"] == "completed", final
    assert set(final) >= STATUS_KEYS
    # Numbers and booleans keep their type in the registry and reach the script as text.
    assert final["params"] == {"capital": 100000, "flag": True, "ratio": 0.5, "name": "x y"}
    command = final["command"]
    assert command[command.index("--flag") + 1] == "true"
    assert command[command.index("--capital") + 1] == "100000"
    assert final["label"] == "api"
    assert final["script_path"] == str((lab.cwd / "valid.py").resolve())
    assert final["cwd"] == str(lab.cwd)
    # The same run as the CLI sees it: same queue, same registry, same shape.
    cli = lab.bt("status", run_id, "--json").json()
    assert cli == client.get(f"{API}/status/{run_id}").json()
    prefix = client.get(f"{API}/status/{run_id[:-3]}")
    assert prefix.json()["run_id"] == run_id

    listing = client.get(f"{API}/list", params={"limit": 50}).json()
    assert set(listing) == {"total", "runs"}
    assert run_id in [run["run_id"] for run in listing["runs"]]
    assert listing["total"] >= 1
    completed = client.get(f"{API}/list", params={"status": "completed", "limit": 1000}).json()
    assert all(run["status"] == "completed" for run in completed["runs"])
    assert client.get(f"{API}/list", params={"status": "", "limit": 1}).status_code == 200

    logs = client.get(f"{API}/logs/{run_id}", params={"lines": 1}).json()
    assert logs == {"run_id": run_id, "lines": ["backtest done"], "total_lines": 2}
    assert client.get(f"{API}/logs/{run_id}").json()["lines"] == [
        "backtest starting",
        "backtest done",
    ]

    files = client.get(f"{API}/results/{run_id}").json()
    assert files["run_id"] == run_id
    names = {item["name"] for item in files["files"]}
    assert {"trades.csv", "pnl.csv", "summary.csv", "execution.log"} <= names
    trades = client.get(f"{API}/results/{run_id}/trades.csv")
    assert trades.status_code == 200
    on_disk = (lab.run_dir(run_id) / "trades.csv").read_bytes()
    assert trades.content == on_disk
    assert trades.headers["content-type"] == "text/csv; charset=utf-8"
    assert trades.headers["content-length"] == str(len(on_disk))
    assert trades.headers["content-disposition"].startswith('attachment; filename="trades.csv"')
    assert "sandbox" in trades.headers["content-security-policy"]
    assert trades.headers["x-content-type-options"] == "nosniff"
    meta = client.get(f"{API}/results/{run_id}/metadata.json")
    assert meta.headers["content-type"] == "application/json"
    log = client.get(f"{API}/results/{run_id}/execution.log")
    assert log.headers["content-type"] == "text/plain; charset=utf-8"

    report = client.post(f"{API}/validate/{run_id}")
    assert report.status_code == 200
    assert report.json()["valid"] is True
    assert set(report.json()) >= {"valid", "errors", "warnings", "file_checks"}
    # Validation that now fails changes the run as `bt validate` does.
    (lab.run_dir(run_id) / "pnl.csv").unlink()
    again = client.post(f"{API}/validate/{run_id}").json()
    assert again["valid"] is False
    assert any(message.startswith("pnl.csv:") for message in again["errors"])
    assert client.get(f"{API}/status/{run_id}").json()["status"] == "failed"

    finished = client.post(f"{API}/cancel/{run_id}")
    document = assert_error(finished, 409, "already failed")
    assert document["message"] == "Run already failed"


def test_list_offset_pages_through_newest_first(client: httpx.Client, server: Server) -> None:
    ids = [submit(client, label="page") for _ in range(3)]
    for run_id in ids:
        server.wait_status(client, run_id, ("completed", "failed"))
    first = client.get(f"{API}/list", params={"label": "page", "limit": 2}).json()
    second = client.get(f"{API}/list", params={"label": "page", "limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] == 3
    assert [run["run_id"] for run in first["runs"] + second["runs"]] == ids[::-1]
    beyond = client.get(f"{API}/list", params={"label": "page", "offset": 10}).json()
    assert beyond == {"total": 3, "runs": []}


def test_cancel_a_running_run(client: httpx.Client, server: Server, lab: QueueLab) -> None:
    gate = lab.gate("cancel")
    run_id = submit(client, "talker.py", params={"lines": 1, "gate": str(gate)})
    server.wait_status(client, run_id, ("running",))
    response = client.post(f"{API}/cancel/{run_id}", params={"grace": 2})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "message": "Run cancelled"}
    assert client.get(f"{API}/status/{run_id}").json()["status"] == "cancelled"


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_is_400_and_unknown_things_404(client: httpx.Client, lab: QueueLab) -> None:
    before = client.get(f"{API}/list").json()["total"]
    assert_error(client.get(f"{API}/status/20000101_000000_deadbeef"), 404, "no run")
    assert_error(client.get(f"{API}/logs/nope"), 404)
    assert_error(client.get(f"{API}/results/nope"), 404)
    assert_error(client.post(f"{API}/cancel/nope"), 404)
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.get(f"{API}/status/latest/extra"), 404)
    bodies: list[Any] = [
        {},
        {"script": ""},
        {"script": 5},
        {"script": "valid.py", "params": {"a": [1, 2]}},
        {"script": "valid.py", "params": {"a": {"b": 1}}},
        {"script": "valid.py", "params": {"a": None}},
        {"script": "valid.py", "params": {"--help": "x"}},
        {"script": "valid.py", "params": {"a b": "x"}},
        {"script": "valid.py", "params": {"a": "x\u0000y"}},
        {"script": "valid.py", "params": {"a": "x" * 20_000}},
        {"script": "valid.py", "params": {f"k{i}": i for i in range(300)}},
        {"script": "valid.py", "timeout": -1},
        {"script": "valid.py", "timeout": 1e300},
        {"script": "valid.py", "priority": 2**70},
        {"script": "valid.py", "priority": "high"},
        {"script": "valid.py", "label": "x" * 5000},
        {"script": "valid.py", "unknown": 1},
        [1, 2, 3],
    ]
    for body in bodies:
        assert_error(client.post(f"{API}/run", json=body), 400)
    not_json = client.post(
        f"{API}/run", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(not_json, 400, "json")
    nan = client.post(
        f"{API}/run",
        content=b'{"script": "valid.py", "timeout": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(nan, 400)
    assert_error(client.post(f"{API}/run", json={"script": "missing.py"}), 404, "not found")
    assert_error(client.get(f"{API}/logs/latest", params={"lines": -1}), 400)
    assert_error(client.get(f"{API}/list", params={"limit": 5000}), 400)
    assert_error(client.get(f"{API}/list", params={"status": "finished"}), 400, "status")
    assert_error(client.get(f"{API}/list", params={"offset": -1}), 400)
    assert_error(client.get(f"{API}/list", params={"limit": "ten"}), 400)
    for bad in ("abc", "-1", "1.5", "9" * 40):
        stream = client.get(f"{API}/logs/latest/stream", headers={"Last-Event-ID": bad})
        assert_error(stream, 400, "Last-Event-ID")
    assert client.get(f"{API}/list").json()["total"] == before  # nothing was recorded


def test_bodies_over_a_megabyte_are_413(client: httpx.Client) -> None:
    big = json.dumps({"script": "valid.py", "label": "x" * 1_100_000}).encode()
    response = client.post(f"{API}/run", content=big, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "too large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is counted
        yield b'{"script": "valid.py", "label": "'
        for _ in range(40):
            yield b"y" * 32_768
        yield b'"}'

    chunked = client.post(
        f"{API}/run", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in chunked.request.headers
    assert_error(chunked, 413, "too large")
    small = client.post(f"{API}/run", json={"script": "valid.py", "label": "y" * 900})
    assert small.status_code == 202


def test_scripts_outside_the_allowed_folders_are_403(
    client: httpx.Client, lab: QueueLab, tmp_path: Path
) -> None:
    before = client.get(f"{API}/list").json()["total"]
    outside = write_script(tmp_path, "outside.py", "print('escaped')\n")
    link = lab.cwd / "link.py"
    link.symlink_to(outside)
    (lab.cwd / "sub").mkdir()
    for script in (
        str(outside),  # absolute, outside
        os.path.relpath(outside, lab.cwd),  # relative with ..
        "sub/../../outside.py",
        "link.py",  # a symlink inside that leads out
        "/etc/hostname",
        "/no/such/outside.py",  # refused before looking: no answer says whether it exists
    ):
        assert_error(client.post(f"{API}/run", json={"script": script}), 403, "only scripts")
    assert client.get(f"{API}/list").json()["total"] == before
    assert not (tmp_path / "escaped").exists()
    ok = client.post(f"{API}/run", json={"script": "sub/../valid.py"})
    assert ok.status_code == 202


def test_result_paths_never_leave_the_run_folder(
    client: httpx.Client, server: Server, lab: QueueLab, tmp_path: Path
) -> None:
    run_id = submit(client)
    server.wait_status(client, run_id, ("completed",))
    secret = tmp_path / "outside.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    (lab.run_dir(run_id) / "leak.csv").symlink_to(secret)
    base = f"{server.url}{API}/results/{run_id}"
    for raw in (
        "%2e%2e/%2e%2e/work/valid.py",
        "..%2F..%2Fwork%2Fvalid.py",
        "%2Fetc%2Fhostname",
        "/etc/hostname",
        "leak.csv",
        "sub/%2e%2e/%2e%2e/x",
    ):
        # Sent exactly as written: no client-side normalisation of the dots.
        request = client.build_request("GET", base)
        request.url = httpx.URL(f"{base}/{raw}")
        response = client.send(request)
        # Refused by the same safe-path check as `bt results` (not merely an unknown route).
        assert_error(response, 400, "refusing")
        assert b"TOP-SECRET-CONTENT" not in response.content
    assert_error(client.get(f"{API}/results/{run_id}/no-such.csv"), 404)
    listed = {item["name"] for item in client.get(f"{API}/results/{run_id}").json()["files"]}
    assert "leak.csv" not in listed


# --- the log stream ---------------------------------------------------------------------------


def test_log_stream_one_event_per_line_resumable(
    client: httpx.Client, server: Server, lab: QueueLab
) -> None:
    gate = lab.gate("stream")
    run_id = submit(client, "talker.py", params={"lines": 30, "every": 0.02, "gate": str(gate)})
    url = f"{API}/logs/{run_id}/stream"
    seen: list[dict[str, Any]] = []
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in events(response):
            seen.append(event)
            if len(seen) == 10:
                break  # the client goes away mid-run
    assert [event["id"] for event in seen] == list(range(1, 11))
    assert [event["data"] for event in seen] == [f"line {n} of 30" for n in range(1, 11)]
    assert client.get(f"{API}/status/{run_id}").json()["status"] == "running"

    resumed: list[dict[str, Any]] = []
    with client.stream("GET", url, headers={"Last-Event-ID": "10"}) as response:
        for event in events(response):
            resumed.append(event)
            if event["id"] == 30:
                gate.touch()  # let the run finish while we watch
    lines = [event for event in resumed if event["event"] == "message"]
    assert [event["id"] for event in lines] == list(range(11, 32))
    assert lines[-2]["data"] == "line 30 of 30"
    assert lines[-1]["data"] == "done"
    assert resumed[-1]["event"] == "end" and resumed[-1]["data"] == "completed"
    log = (lab.run_dir(run_id) / "execution.log").read_text().splitlines()
    assert [event["data"] for event in seen + lines] == log

    # Once the run is final: the last N lines with their numbers, and nothing after the end.
    with client.stream("GET", url, params={"lines": 3}) as response:
        tail = [event for event in events(response) if event["event"] == "message"]
    assert [(event["id"], event["data"]) for event in tail] == [
        (29, "line 29 of 30"),
        (30, "line 30 of 30"),
        (31, "done"),
    ]
    done = client.get(url, headers={"Last-Event-ID": "31"})
    assert done.status_code == 204  # tells an EventSource to stop reconnecting


def test_log_stream_of_a_queued_run_waits_for_its_first_line(server: Server, lab: QueueLab) -> None:
    gate = lab.gate("queued")
    with server.client() as client:
        run_id = submit(client, "talker.py", params={"lines": 2, "gate": str(gate)})
        with client.stream("GET", f"{API}/logs/{run_id}/stream") as response:
            got: list[dict[str, Any]] = []
            for event in events(response):
                got.append(event)
                if event["id"] == 2:
                    gate.touch()
        assert [event["data"] for event in got if event["event"] == "message"] == [
            "line 1 of 2",
            "line 2 of 2",
            "done",
        ]


# --- many runs -------------------------------------------------------------------------------


def test_sweep_compare_and_plot_over_http(client: httpx.Client, lab: QueueLab) -> None:
    body = {"script": "valid.py", "params": {"a": [1, 2], "b": "5:6:1", "c": "x"}}
    sweep = client.post(f"{API}/sweep", json=body)
    assert sweep.status_code == 202, sweep.text
    document = sweep.json()
    assert document["success"] is True and document["count"] == 4
    assert document["sweep_id"].startswith("sweep_") and len(document["run_ids"]) == 4

    def finished() -> bool:
        listed = client.get(f"{API}/list", params={"limit": 50}).json()["runs"]
        mine = [run for run in listed if run["run_id"] in document["run_ids"]]
        return len(mine) == 4 and all(run["status"] == "completed" for run in mine)

    wait_for(finished, timeout=60, interval=0.2)
    table = client.get(f"{API}/compare", params={"sweep": document["sweep_id"]}).json()
    assert table["params"] == ["a", "b"]  # the params that vary, in the order given
    assert {run["run_id"] for run in table["runs"]} == set(document["run_ids"])
    assert all(run["metrics"] for run in table["runs"])
    run_id = document["run_ids"][0]
    curve = client.get(f"{API}/plot/{run_id}").json()["runs"][0]
    status = client.get(f"{API}/status/{run_id}").json()
    pnl = (Path(status["output_dir"]) / "pnl.csv").read_text().splitlines()[1:]
    assert curve["run_id"] == run_id and curve["dates"] == [line.split(",")[0] for line in pnl]
    # The checks in front of them hold.
    outside = client.post(f"{API}/sweep", json={"script": "/etc/hostname", "params": {}})
    assert_error(outside, 403)
    assert_error(client.post(f"{API}/sweep", json={"script": "valid.py", "params": {"a": {}}}), 400)
    bad_spec = {"script": "valid.py", "params": {"a": "10:1:1"}}
    assert_error(client.post(f"{API}/sweep", json=bad_spec), 400)
    assert_error(client.get(f"{API}/plot/2099"), 404)


# --- servers of their own ---------------------------------------------------------------------


def test_submissions_are_rate_limited_per_client(tmp_path: Path) -> None:
    with lab_for(tmp_path) as lab:
        write_scripts(lab.cwd)
        server = start_server(lab, "--rate-limit", "3/minute")
        with server.client() as client:
            for _ in range(3):
                assert client.post(f"{API}/run", json={"script": "valid.py"}).status_code == 202
            limited = client.post(f"{API}/run", json={"script": "valid.py"})
            assert_error(limited, 429, "too many")
            wait = int(limited.headers["retry-after"])
            assert 1 <= wait <= 20  # one token back every 20 s
            # A bad submission is a submission too; reads are not limited.
            assert_error(client.post(f"{API}/run", json={}), 429)
            assert_error(client.post(f"{API}/sweep", json={"script": "valid.py"}), 429)
            for _ in range(20):
                assert client.get(f"{API}/list").status_code == 200
            assert client.get(f"{API}/list").json()["total"] == 3


def test_no_auth_only_on_loopback(tmp_path: Path) -> None:
    with lab_for(tmp_path) as lab:
        refused = lab.bt("serve", "--no-auth", "--host", "0.0.0.0", "--port", "0", timeout=30)
        assert refused.code == 2
        assert refused.stderr.startswith("Error: --no-auth is only allowed on a loopback")
        assert refused.stdout == ""
        write_scripts(lab.cwd)
        server = start_server(lab, "--no-auth", token=None)
        assert "no token needed" in server.output()
        with server.client(token=None) as client:
            assert client.get(f"{API}/list").status_code == 200
            assert set(client.get("/api/health").json()) >= {"registry"}
            # Without a token, browsers of other sites must not be able to act for the user:
            # cross-site posts are refused, and so are other Host names (DNS rebinding).
            evil = client.post(
                f"{API}/run", json={"script": "valid.py"}, headers={"Origin": "http://evil.test"}
            )
            assert_error(evil, 403, "cross-origin")
            rebound = client.get(f"{API}/list", headers={"Host": "evil.test"})
            assert_error(rebound, 400, "host")
            same_site = client.post(
                f"{API}/run", json={"script": "valid.py"}, headers={"Origin": server.url}
            )
            assert same_site.status_code == 202
            preflight = client.options(
                f"{API}/run",
                headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
            )
            assert "access-control-allow-origin" not in preflight.headers


def test_cors_only_for_the_origin_given(tmp_path: Path) -> None:
    with lab_for(tmp_path) as lab:
        write_scripts(lab.cwd)
        server = start_server(lab, "--cors", "http://localhost:3000")
        with server.client(token=None) as anonymous:
            preflight = anonymous.options(
                f"{API}/run",
                headers={
                    "Origin": "http://localhost:3000",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
            other = anonymous.options(
                f"{API}/run",
                headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
            )
            assert "access-control-allow-origin" not in other.headers
        with server.client() as client:
            allowed = client.post(
                f"{API}/run",
                json={"script": "valid.py"},
                headers={"Origin": "http://localhost:3000"},
            )
            assert allowed.status_code == 202
            assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_bad_options_and_a_taken_port_are_plain_errors(server: Server, lab: QueueLab) -> None:
    port = server.url.rsplit(":", 1)[1]
    for args, words in (
        (("--port", port), "cannot listen"),
        (("--rate-limit", "lots"), "--rate-limit"),
        (("--rate-limit", "0/minute"), "--rate-limit"),
        (("--cors", "*"), "--cors"),
        (("--cors", "evil.test"), "--cors"),
        (("--port", "70000"), "--port"),
        (("--max-streams", "0"), "--max-streams"),
    ):
        result = lab.bt("serve", *args, timeout=30, env={"BT_SERVE_TOKEN": TOKEN})
        assert result.code == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("Error: ") and words in result.stderr.lower(), args
        assert "Traceback" not in result.stderr


def test_open_log_streams_are_bounded(tmp_path: Path) -> None:
    with lab_for(tmp_path) as lab:
        write_scripts(lab.cwd)
        server = start_server(lab, "--max-streams", "2")
        gate = lab.gate("streams")
        with server.client() as client:
            run_id = submit(client, "talker.py", params={"lines": 1, "gate": str(gate)})
            url = f"{API}/logs/{run_id}/stream"
            with client.stream("GET", url) as first, client.stream("GET", url) as second:
                # (Kept in variables: a dropped event iterator would close its response.)
                first_events, second_events = events(first), events(second)
                assert next(first_events)["id"] == 1
                assert next(second_events)["id"] == 1
                third = client.get(url)
                assert_error(third, 429, "streams")
                assert third.headers["retry-after"] == "5"
                # The other endpoints do not wait for stream threads.
                assert client.get(f"{API}/status/{run_id}").json()["status"] == "running"

            # Closed by the client: their slots come back once the server has seen them go.
            def reopen() -> httpx.Response | None:
                response = client.send(client.build_request("GET", url), stream=True)
                if response.status_code == 200:
                    return response
                response.close()
                return None

            again: httpx.Response = wait_for(reopen, timeout=30, interval=0.1)
            try:
                gate.touch()
                assert [event["event"] for event in events(again)][-1] == "end"
            finally:
                again.close()


def test_token_is_made_once_owner_only_and_kept_out_of_runs(tmp_path: Path) -> None:
    with lab_for(tmp_path) as lab:
        write_scripts(lab.cwd)
        write_script(
            lab.cwd,
            "envdump.py",
            "import json, os, sys\n"
            "out = sys.argv[sys.argv.index('--output_dir') + 1]\n"
            "json.dump(dict(os.environ), open(os.path.join(out, 'env.json'), 'w'))\n",
        )
        first = start_server(lab, token=None)
        token_file = lab.results / "serve.token"
        assert first.token and first.token in first.output()
        assert token_file.read_text().strip() == first.token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        with first.client() as client:
            assert client.get(f"{API}/list").status_code == 200
        assert first.stop() == 0
        second = start_server(lab, token=None)
        assert second.token is None  # not shown again
        assert first.token not in second.output()
        assert f"token: in {token_file}" in second.output()
        with second.client(token=first.token) as client:
            assert client.get(f"{API}/list").status_code == 200
        second.stop()
        # BT_SERVE_TOKEN wins, and never reaches the scripts the server's queue runs.
        third = start_server(lab, token="another-token-0123456789")
        with third.client() as client:
            run_id = submit(client, "envdump.py")
            third.wait_status(client, run_id, ("completed", "failed"))
            seen = json.loads((lab.run_dir(run_id) / "env.json").read_text())
        assert "BT_SERVE_TOKEN" not in seen
        assert "another-token-0123456789" not in json.dumps(seen)


def test_scripts_dir_sets_the_allowed_folders(tmp_path: Path) -> None:
    with lab_for(tmp_path) as lab:
        scripts = tmp_path / "strategies"
        scripts.mkdir()
        write_scripts(scripts)
        write_scripts(lab.cwd)  # in the server's folder, but not allowed now
        server = start_server(lab, env={"BACKTEST_SCRIPTS_DIR": str(scripts)})
        with server.client() as client:
            found = client.post(f"{API}/run", json={"script": "valid.py"})
            assert found.status_code == 403  # ./valid.py is found first, and is not allowed
            ok = client.post(f"{API}/run", json={"script": str(scripts / "valid.py")})
            assert ok.status_code == 202
            run = server.wait_status(client, ok.json()["run_id"], ("completed", "failed"))
            assert run["script_path"] == str((scripts / "valid.py").resolve())


def test_sigterm_ends_open_streams_and_leaves_runs_running(tmp_path: Path) -> None:
    with lab_for(tmp_path) as lab:
        write_scripts(lab.cwd)
        server = start_server(lab)
        gate = lab.gate("shutdown")
        with server.client() as client:
            run_id = submit(client, "talker.py", params={"lines": 3, "gate": str(gate)})
            got: list[dict[str, Any]] = []
            ended = threading.Event()

            def watch() -> None:
                try:
                    with client.stream("GET", f"{API}/logs/{run_id}/stream") as response:
                        for event in events(response):
                            got.append(event)
                except httpx.HTTPError:
                    pass
                ended.set()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            wait_for(lambda: len(got) >= 3, timeout=60)
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert ended.wait(15), "the open stream did not end on SIGTERM"
            assert server.proc.wait(15) == 0
            assert time.monotonic() - started < 15
        assert "stopped" in server.output()
        assert all(event["event"] == "message" for event in got)  # cut off, not "end"
        # The run lives on in the queue and finishes on its own.
        assert lab.rows()[run_id]["status"] == "running"
        gate.touch()
        code, runs = lab.wait(run_id)
        assert code == 0 and runs[0]["status"] == "completed"


# --- start-up -----------------------------------------------------------------------------------


def test_other_commands_never_import_fastapi(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BT_RESULTS_DIR": str(tmp_path / "results"),
        "PYTHONPROFILEIMPORTTIME": "1",
    }
    for args in (("--help",), ("list", "--json"), ("serve", "--help")):
        result = run_bt(*args, env=env, cwd=tmp_path)
        assert result.code == 0, result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
        assert not {"fastapi", "uvicorn", "starlette", "pydantic"} & imported, args


def test_missing_serve_extra_is_a_plain_error(tmp_path: Path) -> None:
    # The extra's packages made unimportable, as in an install without it.
    code = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn'):\n"
        "    sys.modules[name] = None\n"
        "from btmanager.cli import run_cli\n"
        "sys.exit(run_cli(['serve', '--port', '0']))\n"
    )
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "BT_RESULTS_DIR": str(tmp_path / "results")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("Error: bt serve needs the serve extra")
    assert "pip install 'btmanager[serve]'" in done.stderr
    assert "Traceback" not in done.stderr
