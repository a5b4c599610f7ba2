"""The HTTP client of goal 10: concurrent keep-alive GETs on loopback, counted and timed.

`python serve_load.py URL TOKEN PATH --clients 20 --processes 4 --requests 200` prints one JSON
line: {"seconds", "requests", "errors"}. Clients are threads spread over processes (one
process's GIL would cap the load below what the server can take); the clock starts once every
client is connected and ready, and stops when the last one is done.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import threading
import time
from multiprocessing.synchronize import Barrier
from urllib.parse import urlsplit


def _process(
    url: str, token: str, path: str, threads: int, requests: int, barrier: Barrier, errors: object
) -> None:
    parts = urlsplit(url)
    headers = {"Authorization": f"Bearer {token}"}
    failed = 0
    lock = threading.Lock()
    connections = [
        http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        for _ in range(threads)
    ]
    for connection in connections:
        connection.connect()

    def client(connection: http.client.HTTPConnection) -> None:
        nonlocal failed
        for _ in range(requests):
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
            if not ok:
                with lock:
                    failed += 1

    workers = [threading.Thread(target=client, args=(c,)) for c in connections]
    barrier.wait()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with errors.get_lock():  # type: ignore[attr-defined]
        errors.value += failed  # type: ignore[attr-defined]
    barrier.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("path")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    processes = max(1, min(args.processes, args.clients))
    shares = [args.clients // processes + (i < args.clients % processes) for i in range(processes)]
    barrier = multiprocessing.Barrier(processes + 1)
    errors = multiprocessing.Value("i", 0)
    children = [
        multiprocessing.Process(
            target=_process,
            args=(args.url, args.token, args.path, share, args.requests, barrier, errors),
        )
        for share in shares
    ]
    for child in children:
        child.start()
    barrier.wait()  # everyone connected
    start = time.perf_counter()
    barrier.wait()  # everyone done
    seconds = time.perf_counter() - start
    for child in children:
        child.join()
    total = args.clients * args.requests
    print(json.dumps({"seconds": seconds, "requests": total, "errors": errors.value}))


if __name__ == "__main__":
    main()
