"""Running the app with uvicorn: the socket, and a shutdown that ends log streams too.

On Ctrl-C or SIGTERM the server stops accepting connections, open log streams end (they would
otherwise keep the shutdown waiting), answers in progress finish, and the process exits 0.
Runs are not touched: they belong to the queue's workers, which are separate processes.
"""

from __future__ import annotations

import signal
import socket
import threading
from types import FrameType

import uvicorn
from fastapi import FastAPI

# What a stuck answer may delay the exit by, after streams were asked to end.
GRACEFUL_SECONDS = 5
# Connections served at once; more get a 503 from uvicorn rather than piling up.
MAX_CONNECTIONS = 512


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free one), so the real port is known before serving."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, shutdown: threading.Event) -> None:
        super().__init__(config)
        self._shutdown = shutdown

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._shutdown.set()  # log streams end at once instead of holding the shutdown
        super().handle_exit(sig, frame)


def run(app: FastAPI, sock: socket.socket, shutdown: threading.Event) -> None:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # The client address is the socket's: a forwarded-for header could dodge the rate limit.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
    )
    server = _Server(config, shutdown)
    # uvicorn re-raises the signal that stopped it once it is done; this process then has
    # nothing left to do, so the re-raised signal is ignored and the exit is a clean 0.
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
