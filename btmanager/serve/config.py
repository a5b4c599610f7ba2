"""What a `bt serve` process was started with, checked once before anything is served."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from btmanager.errors import UsageError
from btmanager.settings import Settings

# Request bodies: a run or sweep request is a few KB; anything near this is a mistake or abuse.
MAX_BODY_BYTES = 1_000_000
# Params of one request: count, key and value lengths (the OS limits argv anyway; these keep
# one request from holding the registry and the page hostage).
MAX_PARAMS = 256
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 16_384
MAX_LABEL_CHARS = 1_000
# Open log streams at once. Each holds a thread of its own (reading the log, polling the
# registry), apart from the pool that serves the other endpoints, so streams can never starve
# them.
MAX_STREAMS = 32
DEFAULT_RATE = "60/minute"

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour)s?\s*")


@dataclass(frozen=True)
class Rate:
    """`count` submissions per `period` seconds, per client (also the burst allowed)."""

    count: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = _RATE.fullmatch(text)
        if match is None:
            raise UsageError(
                f"--rate-limit must look like 60/minute (or N/second, N/hour), not {text!r}"
            )
        count = int(match.group(1))
        if not 1 <= count <= 1_000_000:
            raise UsageError(f"--rate-limit must allow from 1 to 1000000 requests, not {count}")
        return cls(count, _PERIODS[match.group(2)])

    @property
    def per_second(self) -> float:
        return self.count / self.period


@dataclass(frozen=True)
class ServeConfig:
    settings: Settings
    host: str
    port: int
    token: str | None  # None: --no-auth (loopback only)
    rate: Rate
    cors: tuple[str, ...]
    cwd: Path  # where `bt serve` started: runs' working directory, ./bt.toml
    script_folders: tuple[Path, ...]  # resolved; scripts must live inside one of them
    max_streams: int = MAX_STREAMS
    max_body: int = MAX_BODY_BYTES


def script_folders(cwd: Path, environ: dict[str, str] | None = None) -> tuple[Path, ...]:
    """BACKTEST_SCRIPTS_DIR's folders, else the folder `bt serve` started in; symlinks resolved
    now, so a link swapped later cannot widen what is allowed."""
    env = os.environ if environ is None else environ
    named = [part for part in env.get("BACKTEST_SCRIPTS_DIR", "").split(os.pathsep) if part]
    folders = [Path(os.path.normpath(cwd / Path(part).expanduser())) for part in named] or [cwd]
    resolved: list[Path] = []
    for folder in folders:
        real = folder.resolve()
        if not real.is_dir():
            raise UsageError(f"BACKTEST_SCRIPTS_DIR names {folder}, which is not a folder")
        resolved.append(real)
    return tuple(dict.fromkeys(resolved))


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be from 0 to 65535, not {port}")
