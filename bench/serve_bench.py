"""Goal 14: `bt serve` (extra `serve`), measured on loopback against its own baselines.

- status throughput with 20 concurrent clients, against a bare FastAPI endpoint returning a
  constant, served by the same server process (the app `bt serve` builds, with that one route
  added by a launcher used only here);
- `GET /api/backtest/list?limit=50` at 100 000 runs against the same at 100 runs;
- time from spawning `bt serve` until it answers, against importing fastapi and uvicorn.

Rows skip cleanly when the interpreter running `bt` lacks the extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from harness import CommandFailed, Row, Sample, interleaved, ratio_row, skipped_row

if TYPE_CHECKING:
    from goals import Context

TOKEN = "bench-token-0123456789abcdef"
LOAD_CLIENTS = 20
LOAD = Path(__file__).resolve().parent / "serve_load.py"

# `bt serve` with one more route: the constant baseline, served by the very same app and
# process. Only the benchmark starts it.
LAUNCHER = """\
import sys

import btmanager.serve.app as serve_app

built = serve_app.create_app


def create_app(config):
    app = built(config)

    @app.get("/bench/constant")
    async def constant():
        return {"ok": True}

    return app


serve_app.create_app = create_app
from btmanager.cli import main

sys.argv = ["bt", "serve", *sys.argv[1:]]
main()
"""


class Served:
    """A server process started for a measurement; stopped with SIGTERM at the end."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "listening on " not in line:
            self.stop()
            raise CommandFailed(f"bt serve did not start: {line.strip()}")
        self.url = line.split("listening on ", 1)[1].strip().rstrip("/")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from spawn until `/api/health` answered."""
        deadline = time.perf_counter() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=5) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - self.started
            except (urllib.error.URLError, OSError):
                pass
            if time.perf_counter() > deadline or self.proc.poll() is not None:
                raise CommandFailed("bt serve did not answer /api/health")
            time.sleep(0.002)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def _load(ctx: Context, url: str, path: str, clients: int, requests: int) -> Sample:
    processes = 1 if clients == 1 else min(4, clients)
    argv = [str(ctx.python), str(LOAD), url, TOKEN, path, "--clients", str(clients)]
    argv += ["--processes", str(processes), "--requests", str(requests)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=ctx.env(),
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise CommandFailed(f"serve_load.py failed: {done.stderr[-1000:]}")
    result = json.loads(done.stdout)
    if result["errors"]:
        raise CommandFailed(f"{result['errors']} of {result['requests']} requests to {path} failed")
    return Sample(float(result["seconds"]), 0, 0)


def goal_14(ctx: Context) -> list[Row]:
    from goals import seeded_results

    small, big = ctx.sizes.registry_small, ctx.sizes.registry_big
    throughput = f"`GET /api/backtest/status/<id>`, {LOAD_CLIENTS} concurrent loopback clients"
    listing = f"`GET /api/backtest/list?limit=50`, {big} runs"
    ready = "`bt serve` ready to answer (spawn to first `/api/health` 200)"
    if not ctx.python_can_import("fastapi, uvicorn"):
        why = "the serve extra is missing (pip install 'btmanager[serve]')"
        return [
            skipped_row(
                "14", throughput, "a constant FastAPI endpoint, same server", ">= 0.5x", why
            ),
            skipped_row("14", listing, f"same, {small} runs", "<= 1.2x", why),
            skipped_row("14", ready, "`import fastapi, uvicorn`", "<= 2x", why),
        ]
    ctx.log("goal 14: bt serve throughput, listing, start-up")
    _, env_small, id_small = seeded_results(ctx, "g10small", small)
    _, env_big, _ = seeded_results(ctx, "g10big", big)
    work = ctx.folder("g10/work")
    launcher = work / "serve_with_constant.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    per_client = min(200, ctx.sizes.repeats * 14)  # 200 with full sizes, 42 quick
    sequential = min(100, ctx.sizes.repeats * 20)  # list requests per sample

    def serve(env: dict[str, str]) -> Served:
        argv = [str(ctx.python), str(launcher), "--port", "0"]
        return Served(argv, work, {**env, "BT_SERVE_TOKEN": TOKEN})

    small_server = serve(env_small)
    big_server = serve(env_big)
    try:
        small_server.wait_ready()
        big_server.wait_ready()
        status_path = f"/api/backtest/status/{id_small}"
        list_path = "/api/backtest/list?limit=50"
        for path in (status_path, "/bench/constant"):  # warm-up, unrecorded
            _load(ctx, small_server.url, path, LOAD_CLIENTS, 10)
        series = interleaved(
            {
                "constant": lambda: _load(
                    ctx, small_server.url, "/bench/constant", LOAD_CLIENTS, per_client
                ),
                "status": lambda: _load(
                    ctx, small_server.url, status_path, LOAD_CLIENTS, per_client
                ),
                "list_big": lambda: _load(ctx, big_server.url, list_path, 1, sequential),
                "list_small": lambda: _load(ctx, small_server.url, list_path, 1, sequential),
            },
            ctx.sizes.heavy_repeats + 2,
            0,
        )
        with urllib.request.urlopen(
            urllib.request.Request(
                f"{big_server.url}{list_path}", headers={"Authorization": f"Bearer {TOKEN}"}
            ),
            timeout=60,
        ) as answer:
            document = json.loads(answer.read())
        if document["total"] != big or len(document["runs"]) != min(50, big):
            raise CommandFailed(f"list at {big} runs: total {document['total']}")
    finally:
        small_server.stop()
        big_server.stop()

    def start_once() -> Sample:
        server = Served(
            ctx.bt_argv("serve", "--port", "0"), work, {**env_small, "BT_SERVE_TOKEN": TOKEN}
        )
        try:
            return Sample(server.wait_ready(), 0, 0)
        finally:
            server.stop()

    imports = ctx.measure([ctx.python, "-c", "import fastapi, uvicorn"], work, ctx.env())
    startup = interleaved(
        {"ready": start_once, "imports": imports}, ctx.sizes.repeats, ctx.sizes.warmup
    )

    requests = LOAD_CLIENTS * per_client
    rate = {name: requests / series[name].median for name in ("constant", "status")}
    ratio = rate["status"] / rate["constant"]
    return [
        Row(
            "14",
            throughput,
            "a constant FastAPI endpoint (async), same server",
            f"{rate['status']:.0f} req/s ({series['status'].time_text()} for {requests})",
            f"{rate['constant']:.0f} req/s ({series['constant'].time_text()})",
            f"{ratio:.2f}x",
            ">= 0.5x",
            ratio >= 0.5,
            f"registry of {small} runs; keep-alive clients as threads over "
            f"{min(4, LOAD_CLIENTS)} processes; client and server share the machine's "
            f"{os.cpu_count()} cores",
        ),
        ratio_row(
            "14",
            listing,
            f"same, {small} runs",
            series["list_big"],
            series["list_small"],
            1.2,
            f"{sequential} sequential requests per sample, one keep-alive client; "
            "registry rows inserted with sqlite3, shaped like a real run",
        ),
        ratio_row(
            "14",
            ready,
            "`python -c 'import fastapi, uvicorn'`",
            startup["ready"],
            startup["imports"],
            2.0,
            f"registry of {small} runs; python {sys.version_info.major}.{sys.version_info.minor}",
        ),
    ]
