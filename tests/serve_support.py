"""Support for the `bt serve` tests: a real `bt serve` subprocess on a free loopback port.

`start_server` starts `bt serve --port 0` in a QueueLab (whose teardown kills whatever the test
left running), reads the address it prints, and waits, with a deadline, until it answers.
"""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import BT, write_script
from tests.queue_support import QueueLab
from tests.scripts import WRITE_VALID_OUTPUTS

TOKEN = "test-token-0123456789abcdef"
START_DEADLINE = 60.0

# Prints --lines numbered lines, --every seconds apart, then waits for --gate (if given)
# before writing valid outputs, so a test can hold the run open while it watches.
TALKER = (
    WRITE_VALID_OUTPUTS
    + """
import argparse, time
parser = argparse.ArgumentParser()
parser.add_argument("--lines", type=int, default=5)
parser.add_argument("--every", type=float, default=0.0)
parser.add_argument("--gate", default="")
args, _ = parser.parse_known_args()
for number in range(1, args.lines + 1):
    print(f"line {number} of {args.lines}", flush=True)
    time.sleep(args.every)
deadline = time.time() + 120
while args.gate and not os.path.exists(args.gate) and time.time() < deadline:
    time.sleep(0.05)
write_valid_outputs(output_dir())
print("done", flush=True)
"""
)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    token: str | None
    lab: QueueLab
    lines: list[str] = field(default_factory=list)
    _output: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def client(self, token: str | None = "", **kwargs: Any) -> httpx.Client:
        """A client with the server's token ("" default), another token, or none (None)."""
        chosen = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {chosen}"} if chosen else {}
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def output(self) -> str:
        """Everything the server printed so far."""
        while True:
            try:
                line = self._output.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def wait_status(
        self, client: httpx.Client, run_id: str, statuses: tuple[str, ...], timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            document: dict[str, Any] = client.get(f"/api/backtest/status/{run_id}").json()
            if document["status"] in statuses:
                return document
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {document['status']} after {timeout} s")
            time.sleep(0.1)


def _pump(stream: Any, sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def start_server(
    lab: QueueLab,
    *args: str,
    token: str | None = TOKEN,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """`bt serve --port 0 ARGS` in the lab; BT_SERVE_TOKEN=token unless token is None."""
    environ = {**lab.env, **(env or {})}
    environ.pop("BT_SERVE_TOKEN", None)
    if token is not None:
        environ["BT_SERVE_TOKEN"] = token
    proc = subprocess.Popen(
        [*BT, "serve", "--port", "0", *args],
        cwd=cwd or lab.cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lab.popens.append(proc)
    server = Server(proc, "", token, lab)
    threading.Thread(target=_pump, args=(proc.stdout, server._output), daemon=True).start()
    deadline = time.monotonic() + START_DEADLINE
    while not server.url:
        printed = server.output()
        found = re.search(r"listening on (http://\S+?)/?$", printed, re.MULTILINE)
        if found:
            server.url = found.group(1)
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"bt serve did not start: {server.output()}")
        time.sleep(0.02)
    generated = re.search(r"token \(new; saved in .*, shown this once\): (\S+)", server.output())
    if token is None and generated:
        server.token = generated.group(1)
    while True:  # it answers once uvicorn serves the socket
        try:
            if httpx.get(f"{server.url}/api/health", timeout=5).status_code in (200, 503):
                return server
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"bt serve did not answer: {server.output()}")
        time.sleep(0.05)


def write_scripts(folder: Path) -> None:
    from tests.scripts import VALID

    write_script(folder, "valid.py", VALID)
    write_script(folder, "talker.py", TALKER)


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Server-sent events of a streamed response: {"id", "event", "data"} each."""
    block: list[str] = []
    for line in response.iter_lines():
        if line:
            block.append(line)
            continue
        if not block:
            continue
        event: dict[str, Any] = {"id": None, "event": "message", "data": []}
        for item in block:
            if item.startswith(":"):
                continue
            name, _, value = item.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event["id"] = int(value)
            elif name == "event":
                event["event"] = value
            elif name == "data":
                event["data"].append(value)
        block = []
        if event["id"] is None and event["event"] == "message":
            continue  # a keep-alive comment
        event["data"] = "\n".join(event["data"])
        yield event


def chromium_path() -> str:
    """Debian's chromium, or skip the test with the reason."""
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "no chromium on PATH (apt-get install chromium); playwright may not download one"
        )
    with contextlib.suppress(ImportError):
        import playwright  # noqa: F401

        return found
    pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
