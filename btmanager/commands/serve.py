"""`bt serve`: the HTTP API and web page (extra `serve`: FastAPI and uvicorn).

FastAPI and uvicorn are imported only when this command runs, so no other command pays their
~0.4 s import time.
"""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

import sys
from pathlib import Path
from typing import Annotated

import typer

from btmanager.app import app
from btmanager.errors import UsageError

# What `pip install 'btmanager[serve]'` brings (with what they need themselves).
_SERVE_EXTRA = frozenset({"fastapi", "uvicorn", "starlette", "pydantic", "anyio", "h11"})


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Address to listen on (default: loopback only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port (0: any free port).")] = 5001,
    rate_limit: Annotated[
        str,
        typer.Option(
            "--rate-limit",
            metavar="N/minute",
            help="Submissions allowed per client (token bucket; also N/second, N/hour).",
        ),
    ] = "60/minute",
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="No token needed (refused unless HOST is loopback)."),
    ] = False,
    max_streams: Annotated[
        int,
        typer.Option(
            "--max-streams",
            metavar="N",
            help="Log streams open at once (each holds a thread); more get 429.",
            min=1,
            max=1024,
        ),
    ] = 32,
    cors: Annotated[
        list[str] | None,
        typer.Option(
            "--cors",
            metavar="ORIGIN",
            help="Allow browser pages of this origin (e.g. http://localhost:3000); repeatable.",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and the web page over this registry and queue.

    Every endpoint but /api/health and the page needs `Authorization: Bearer TOKEN`; the token
    is $BT_SERVE_TOKEN, else the one in <results>/serve.token (made and shown on first start).
    Runs submitted over HTTP are queued like `bt run -d`; only scripts inside the folders of
    $BACKTEST_SCRIPTS_DIR (default: this folder) can be run. Ctrl-C or SIGTERM stops serving;
    queued and running runs carry on.
    """
    from btmanager.serve.auth import is_loopback, load_token
    from btmanager.serve.config import Rate, ServeConfig, check_port, script_folders
    from btmanager.settings import Settings

    check_port(port)
    rate = Rate.parse(rate_limit)
    origins = tuple(dict.fromkeys(cors or ()))
    for origin in origins:
        if origin == "*" or not origin.startswith(("http://", "https://")):
            raise UsageError(f"--cors takes an origin such as https://example.org, not {origin!r}")
    if no_auth and not is_loopback(host):
        raise UsageError(
            f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1), not {host}"
        )
    try:
        from btmanager.serve import app as serve_app
        from btmanager.serve import server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in _SERVE_EXTRA:
            raise
        raise UsageError(
            f"bt serve needs the serve extra ({exc.name} is missing): "
            "pip install 'btmanager[serve]'"
        ) from None
    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings.resolve()
    cwd = Path.cwd()
    folders = script_folders(cwd)
    token = None if no_auth else load_token(settings.results_dir)
    config = ServeConfig(
        settings=settings,
        host=host,
        port=port,
        token=None if token is None else token.value,
        rate=rate,
        cors=origins,
        cwd=cwd,
        script_folders=folders,
        max_streams=max_streams,
    )
    application = serve_app.create_app(config)
    try:
        sock = server.bind(host, port)
    except OSError as exc:
        raise UsageError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    lines = [
        f"bt serve: listening on http://{shown}:{bound}/",
        f"  registry: {settings.db_path}",
        f"  scripts from: {', '.join(map(str, folders))}",
    ]
    if token is None:
        lines.append("  no token needed (--no-auth; this machine only)")
    elif token.source == "new":
        lines.append(f"  token (new; saved in {token.path}, shown this once): {token.value}")
    elif token.source == "file":
        lines.append(f"  token: in {token.path}")
    else:
        lines.append("  token: from BT_SERVE_TOKEN")
    if not is_loopback(host):
        lines.append(
            "  warning: plain HTTP on a network address; put it behind TLS (a reverse proxy)"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    server.run(application, sock, application.state.bt.shutdown)
    sys.stdout.write("bt serve: stopped (queued and running runs carry on)\n")
    sys.stdout.flush()
