"""From a `bt sweep` request to its queued runs: one registry transaction for all of them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btmanager.command import build_argv
from btmanager.errors import UsageError
from btmanager.lifecycle.create import (
    Prepared,
    make_results_folder,
    prepare,
    run_values,
)
from btmanager.lifecycle.request import RunRequest
from btmanager.lifecycle.state import RunStates
from btmanager.registry.db import dumps
from btmanager.registry.model import Run
from btmanager.settings import Settings
from btmanager.sweeps.grid import DEFAULT_MAX_RUNS, Space, choose
from btmanager.timeutil import utcnow

SWEEP_PREFIX = "sweep_"
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


@dataclass
class SweepRequest:
    """What the user asked `bt sweep` for. `base` holds what every run shares (its params are
    not used: `space` gives each run's)."""

    base: RunRequest
    space: Space
    sample: int | None = None
    seed: int | None = None
    max_runs: int = DEFAULT_MAX_RUNS
    max_parallel: int | None = None
    label: str | None = None  # a template: `{key}` is the run's value of key
    after: list[str] = field(default_factory=list)  # run ids, resolved


@dataclass
class Planned:
    """The runs a sweep request stands for, before anything is recorded."""

    params: list[dict[str, str]]
    labels: list[str | None]

    def to_dict(self) -> dict[str, Any]:
        return {"count": len(self.params), "params": self.params}


@dataclass
class SweepResult:
    sweep_id: str
    run_ids: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": True,
            "sweep_id": self.sweep_id,
            "count": len(self.run_ids),
            "run_ids": self.run_ids,
        }


def render_label(template: str, params: Mapping[str, str]) -> str:
    """`ma-{fast}-{slow}` with the run's values; `{{` and `}}` are literal braces."""

    def value(match: re.Match[str]) -> str:
        text = match.group(0)
        if text in ("{{", "}}"):
            return text[0]
        key = match.group(1)
        if key not in params:
            known = ", ".join(params) or "none"
            raise UsageError(f"--label names {{{key}}}, which is not a parameter (params: {known})")
        return params[key]

    return _PLACEHOLDER.sub(value, template)


def plan(request: SweepRequest) -> Planned:
    """The combinations and labels of a sweep (errors before anything is recorded)."""
    combos = choose(request.space, request.sample, request.seed, request.max_runs)
    template = request.label
    labels: list[str | None] = (
        [None] * len(combos)
        if template is None
        else [render_label(template, combo) for combo in combos]
    )
    return Planned(combos, labels)


def _new_ids(count: int) -> list[str]:
    """`count` distinct run ids of this second (32 random bits each, as `new_run_id`)."""
    stamp = utcnow().strftime("%Y%m%d_%H%M%S")
    ids: dict[str, None] = {}
    while len(ids) < count:
        missing = count - len(ids)
        noise = os.urandom(4 * missing).hex()
        for start in range(0, len(noise), 8):
            ids[f"{stamp}_{noise[start : start + 8]}"] = None
    return list(ids)


def _encode(text: str) -> str:
    """A string as JSON (what json.dumps gives), without json.dumps for plain ASCII text."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


class _RowMaker:
    """The registry rows of a sweep's runs, built from what they share.

    Every run of a sweep has the same script, options, extra args and rules: one row is made
    the ordinary way (`run_values`), and each run's row is a copy with its own id, folder,
    label, params and command. The command and params are assembled from JSON fragments
    encoded once per key and value, since building and encoding 10 000 argv lists was most of
    a 10 000-run sweep's time. The assembly is checked against `build_argv` on the first run;
    if they ever disagree, every command is built by `build_argv` instead.
    """

    def __init__(
        self, settings: Settings, request: SweepRequest, prepared: Prepared, first: Planned
    ) -> None:
        self.prepared = prepared
        self.base = request.base
        self.folder_prefix = str(settings.results_dir) + os.sep + "run_"
        run_id = "0" * 8
        template = run_values(
            self.base,
            prepared,
            run_id,
            Path(self.folder_prefix + run_id),
            detached=True,
            params=first.params[0],
            label=first.labels[0],
        )
        self.columns = list(template)
        self.template = [
            dumps(value) if name in Run._JSON_COLUMNS else value for name, value in template.items()
        ]
        self.at = {name: index for index, name in enumerate(self.columns)}
        extra = list(self.base.extra_args)
        self.dummy = Path("D")
        empty = build_argv(prepared.script, {}, extra, self.dummy, prepared.env)
        self.head = len(empty) - len(extra) - 2  # interpreter and script: params follow them
        self.head_json = [_encode(arg) for arg in empty[: self.head]]
        self.tail_json = [_encode(arg) for arg in empty[self.head : -1]]
        self.arg_json: dict[tuple[str, str], list[str]] = {}
        self.pair_json: dict[tuple[str, str], str] = {}
        expected = json.loads(str(self.template[self.at["command"]]))
        self.fast = json.loads(self.command(first.params[0], str(template["output_dir"]))) == (
            expected
        )

    def _fragments(self, key: str, value: str) -> list[str]:
        found = self.arg_json.get((key, value))
        if found is None:
            argv = build_argv(self.prepared.script, {key: value}, [], self.dummy, self.prepared.env)
            found = [_encode(arg) for arg in argv[self.head : -2]]
            self.arg_json[(key, value)] = found
        return found

    def command(self, params: Mapping[str, str], output_dir: str) -> str:
        parts = list(self.head_json)
        for key, value in params.items():
            parts += self._fragments(key, value)
        parts += self.tail_json
        parts.append(_encode(output_dir))
        return "[" + ", ".join(parts) + "]"

    def params(self, params: Mapping[str, str]) -> str:
        parts = []
        for key, value in params.items():
            pair = self.pair_json.get((key, value))
            if pair is None:
                pair = f"{_encode(key)}: {_encode(value)}"
                self.pair_json[(key, value)] = pair
            parts.append(pair)
        return "{" + ", ".join(parts) + "}"

    def row(self, run_id: str, params: Mapping[str, str], label: str | None) -> list[Any]:
        output_dir = self.folder_prefix + run_id
        row = list(self.template)
        row[self.at["run_id"]] = run_id
        row[self.at["output_dir"]] = output_dir
        row[self.at["label"]] = label
        row[self.at["params"]] = self.params(params)
        if self.fast:
            row[self.at["command"]] = self.command(params, output_dir)
        else:
            argv = build_argv(
                self.prepared.script,
                dict(params),
                self.base.extra_args,
                Path(output_dir),
                self.prepared.env,
            )
            row[self.at["command"]] = dumps(argv)
        return row


def submit_sweep(
    settings: Settings,
    states: RunStates,
    request: SweepRequest,
    planned: Planned | None = None,
    environ: Mapping[str, str] | None = None,
) -> SweepResult:
    """Queue every run of the sweep (`planned`, if already planned), detached, in one
    transaction."""
    prepared = prepare(request.base, environ)
    if planned is None:
        planned = plan(request)
    _check_requests(settings, request, planned, prepared.env)
    make_results_folder(settings)
    run_ids = _new_ids(len(planned.params))
    maker = _RowMaker(settings, request, prepared, planned)
    rows = [
        maker.row(run_id, params, label)
        for run_id, params, label in zip(run_ids, planned.params, planned.labels, strict=True)
    ]
    sweep_id = SWEEP_PREFIX + os.urandom(4).hex()
    states.queue_sweep(
        maker.columns,
        rows,
        {
            "sweep_id": sweep_id,
            "script_path": request.base.script,
            "max_parallel": request.max_parallel,
            "env": prepared.env,
        },
        after=request.after,
    )
    return SweepResult(sweep_id, run_ids)


def _check_requests(
    settings: Settings, request: SweepRequest, planned: Planned, env: Mapping[str, str]
) -> None:
    """Refuse now, before anything is queued, what any run of the sweep could only fail with
    once started: NUL bytes anywhere, and (checked on the longest one) a command line too long
    for the OS."""
    from btmanager.command import RUN_ID_SAMPLE, check_request, check_text

    if not planned.params:
        return
    for params in planned.params:
        for key, value in params.items():
            check_text(value, f"Parameter {key!r}")
    for label in planned.labels:
        if label is not None:
            check_text(label, "--label")
    longest = max(planned.params, key=lambda p: sum(len(k) + len(v) for k, v in p.items()))
    base = request.base
    check_request(
        base.script,
        longest,
        base.extra_args,
        None,
        base.cwd,
        settings.run_dir(RUN_ID_SAMPLE),
        env,
    )


def dry_run(request: SweepRequest, environ: Mapping[str, str] | None = None) -> Planned:
    """What `submit_sweep` would queue (the script is resolved, as it would be)."""
    prepare(request.base, environ)
    return plan(request)
