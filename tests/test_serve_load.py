"""A bounded load on loopback: 20 clients x 200 status requests, all answered, in time."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.queue_support import lab_for
from tests.serve_support import start_server, write_scripts

CLIENTS = 20
REQUESTS = 200
DEADLINE = 240.0  # seconds for all 4000 requests; ~10-20 s here, on 2 busy cores


def test_twenty_clients_two_hundred_status_requests_each(tmp_path: Path) -> None:
    with lab_for(tmp_path) as lab:
        write_scripts(lab.cwd)
        server = start_server(lab)
        with server.client() as client:
            run_id = client.post("/api/backtest/run", json={"script": "valid.py"}).json()["run_id"]
            server.wait_status(client, run_id, ("completed",))
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + DEADLINE

        def one_client() -> None:
            with server.client(timeout=60.0) as http:
                for _ in range(REQUESTS):
                    if time.monotonic() > stop_at:
                        outcome = "deadline"
                    else:
                        try:
                            response = http.get(f"/api/backtest/status/{run_id}")
                            good = response.status_code == 200 and (
                                response.json()["run_id"] == run_id
                            )
                            outcome = "ok" if good else f"status {response.status_code}"
                        except httpx.HTTPError as exc:
                            outcome = type(exc).__name__
                    with lock:
                        outcomes[outcome] += 1

        threads = [threading.Thread(target=one_client) for _ in range(CLIENTS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE + 60)
        elapsed = time.monotonic() - started
        assert outcomes == Counter({"ok": CLIENTS * REQUESTS}), (outcomes, f"{elapsed:.1f} s")
        assert server.proc.poll() is None  # still serving
