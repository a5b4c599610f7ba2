"""The endpoints: each parses its request, calls the Service the CLI uses, returns its data.

Shapes are those of the CLI's `--json` output. Sync routes run on the server's thread pool;
each thread keeps a Service of its own (its registry connections must stay in one thread; see
`state.Services`).
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from btmanager.errors import AmbiguousRunError, NotFoundError, UsageError
from btmanager.params import ParamValue
from btmanager.serve.config import (
    MAX_KEY_CHARS,
    MAX_LABEL_CHARS,
    MAX_PARAMS,
    MAX_VALUE_CHARS,
)
from btmanager.serve.errors import ApiError, BtJSONResponse
from btmanager.serve.ratelimit import retry_after
from btmanager.serve.scripts import allowed_script
from btmanager.serve.state import ServeState
from btmanager.serve.streams import EventStream, log_events
from btmanager.service import Service
from btmanager.settings import DEFAULT_GRACE

router = APIRouter(prefix="/api")

TEN_YEARS = 10 * 365.25 * 24 * 3600
INT64 = 2**63 - 1
MAX_LOG_LINES = 100_000
MAX_LIST = 1_000

Scalar = StrictStr | StrictBool | StrictInt | StrictFloat
RunRef = Annotated[
    str,
    PathParam(
        min_length=1, max_length=200, description="Run id, a unique prefix of one, or `latest`."
    ),
]


class RunBody(BaseModel):
    """`POST /api/backtest/run`: what `bt run -d SCRIPT -p KEY=VALUE ...` takes."""

    model_config = ConfigDict(extra="forbid")

    script: StrictStr = Field(min_length=1, max_length=4096)
    params: dict[StrictStr, Scalar] = Field(default_factory=dict, max_length=MAX_PARAMS)
    label: StrictStr | None = Field(default=None, max_length=MAX_LABEL_CHARS)
    priority: StrictInt | None = Field(default=None, ge=-INT64 - 1, le=INT64)
    timeout: StrictInt | StrictFloat | None = Field(
        default=None, gt=0, le=TEN_YEARS, allow_inf_nan=False
    )


class SweepBody(BaseModel):
    """`POST /api/backtest/sweep`: a key's list is its values, a string a CLI SPEC."""

    model_config = ConfigDict(extra="forbid")

    script: StrictStr = Field(min_length=1, max_length=4096)
    params: dict[StrictStr, list[Scalar] | Scalar] = Field(
        default_factory=dict, max_length=MAX_PARAMS
    )
    max_parallel: StrictInt | None = Field(default=None, ge=1, le=1024)
    label: StrictStr | None = Field(default=None, max_length=MAX_LABEL_CHARS)


def state_of(request: Request) -> ServeState:
    state = request.app.state.bt
    assert isinstance(state, ServeState)
    return state


@contextmanager
def service(request: Request) -> Iterator[Service]:
    """This thread's Service. Requests never start workers as a side effect of reading (a
    burst of reads would start a burst of workers); submissions start one, and the server's
    housekeeping does too."""
    services = state_of(request).services
    try:
        yield services.get()
    except (UsageError, NotFoundError, AmbiguousRunError, ApiError):
        raise  # the request's own fault: the Service is as good as before
    except BaseException:
        services.discard()  # whatever state it was left in, the next request starts afresh
        raise


async def submission_quota(request: Request) -> None:
    """The per-client token bucket of submissions (429 with Retry-After when empty)."""
    client = request.client.host if request.client else "unknown"
    wait = state_of(request).limiter.take(client)
    if wait > 0:
        after = retry_after(wait)
        raise ApiError(429, f"too many submissions; retry in {after} s", {"Retry-After": after})


def param_text(key: str, value: object) -> str:
    """A JSON param as the script receives it (numbers as written, booleans true/false)."""
    from btmanager.params import _scalar_to_text, check_key

    if len(key) > MAX_KEY_CHARS:
        raise UsageError(f"Parameter key too long ({len(key)} characters, at most {MAX_KEY_CHARS})")
    check_key(key, "params")
    text = _scalar_to_text(key, value, "params")
    if len(text) > MAX_VALUE_CHARS:
        raise UsageError(f"Parameter {key!r} is too long (at most {MAX_VALUE_CHARS} characters)")
    if "\x00" in text:
        raise UsageError(f"Parameter {key!r} holds a NUL byte")
    return text


def _script(state: ServeState, script: str) -> Path:
    config = state.config
    return allowed_script(script, config.cwd, config.script_folders, os.environ)


def _rules(state: ServeState) -> dict[str, Any] | None:
    """./bt.toml of the folder `bt serve` started in, as `bt run` started there would."""
    from btmanager.validation.rules import load_rules

    rules = load_rules(None, state.config.cwd)
    return rules.to_dict() if rules is not None else None


# --- runs ---------------------------------------------------------------------------------


@router.post(
    "/backtest/run",
    status_code=202,
    dependencies=[Depends(submission_quota)],
    summary="Queue a run (as `bt run -d`)",
)
def submit_run(body: RunBody, request: Request) -> Response:
    from btmanager.lifecycle.request import RunRequest

    state = state_of(request)
    # Checked as text (what the script receives); JSON numbers and booleans keep their type in
    # the registry, as a params file's do.
    params: dict[str, ParamValue] = {}
    for key, value in body.params.items():
        param_text(key, value)
        params[key] = value if isinstance(value, bool | int | float) else param_text(key, value)
    run_request = RunRequest(
        script=str(_script(state, body.script)),
        params=params,
        cwd=state.config.cwd,
        label=body.label,
        rules=_rules(state),
        timeout=float(body.timeout) if body.timeout is not None else None,
        grace=DEFAULT_GRACE,
        priority=body.priority or 0,
    )
    with service(request) as svc:
        run = svc.submit(run_request)
    document = {
        "success": True,
        "run_id": run.run_id,
        "status": run.status,
        "message": "Backtest queued for execution",
    }
    location = f"/api/backtest/status/{run.run_id}"
    return BtJSONResponse(document, status_code=202, headers={"Location": location})


def status_document(svc: Service, run_id: str) -> dict[str, Any]:
    run = svc.status(run_id)
    return {**run.to_status_dict(), **svc.details(run)}


def status_from_pool(run_id: str, request: Request) -> dict[str, Any]:
    with service(request) as svc:
        return status_document(svc, run_id)


@router.get("/backtest/status/{run_id}", summary="A run's status (as `bt status --json`)")
async def status(run_id: RunRef, request: Request) -> Response:
    # The route pages and scripts poll: answered on the event loop when the registry can be
    # read at once (see `LoopReads`), else by the thread pool like every other route.
    document = state_of(request).loop_reads.answer(lambda svc: status_document(svc, run_id))
    if document is None:
        document = await run_in_threadpool(status_from_pool, run_id, request)
    return BtJSONResponse(document)


@router.get("/backtest/list", summary="Runs, newest first (as `bt list --json`)")
def list_runs(
    request: Request,
    status: str | None = None,
    limit: Annotated[int, Query(ge=0, le=MAX_LIST)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT64)] = 0,
    script: str | None = None,
    sweep: str | None = None,
    label: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
) -> Response:
    with service(request) as svc:
        # An empty filter (`?status=`, as forms and query templates send it) is no filter.
        selection = svc.selection(sweep or None, label, tag, status or None, script or None)
        total, runs = svc.list_runs(selection, limit, offset)
        return BtJSONResponse({"total": total, "runs": [run.to_status_dict() for run in runs]})


@router.post("/backtest/cancel/{run_id}", summary="Cancel a run (as `bt cancel --json`)")
def cancel(
    run_id: RunRef,
    request: Request,
    grace: Annotated[float, Query(ge=0, le=3600, allow_inf_nan=False)] = DEFAULT_GRACE,
) -> Response:
    with service(request) as svc:
        result = svc.cancel(run_id, grace)
    if not result.success:
        raise ApiError(409, result.message, extra={"message": result.message})
    return BtJSONResponse(result.to_dict())


# --- logs ---------------------------------------------------------------------------------


@router.get("/backtest/logs/{run_id}", summary="The last lines of the log (as `bt logs --json`)")
def logs(
    run_id: RunRef,
    request: Request,
    lines: Annotated[int, Query(ge=0, le=MAX_LOG_LINES)] = 100,
) -> Response:
    with service(request) as svc:
        return BtJSONResponse(svc.logs(run_id, lines).to_dict())


@router.get(
    "/backtest/logs/{run_id}/stream",
    summary="The log as server-sent events (id = line number; resumes after Last-Event-ID)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def log_stream(
    run_id: RunRef,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    lines: Annotated[int | None, Query(ge=0, le=MAX_LOG_LINES)] = None,
) -> Response:
    after: int | None = None
    given = (last_event_id or "").strip()
    if given:
        if not (given.isascii() and given.isdigit() and len(given) <= 18):
            raise UsageError("Last-Event-ID must be a line number")
        after = int(given)
    state = state_of(request)
    with service(request) as svc:
        run = svc.status(run_id)
        if run.is_final and after is not None and after >= svc.logs(run.run_id, 0).total_lines:
            # Nothing will ever follow: 204 also tells an EventSource to stop reconnecting.
            return Response(status_code=204)
    if not state.slots.try_take():
        raise ApiError(429, "too many open log streams; retry later", {"Retry-After": "5"})
    events = log_events(state.config.settings, run.run_id, after, lines, state.shutdown)
    return EventStream(events, state.slots)


# --- validation and files -----------------------------------------------------------------


@router.post("/backtest/validate/{run_id}", summary="Validate a run again (as `bt validate`)")
def validate(run_id: RunRef, request: Request) -> Response:
    state = state_of(request)
    with service(request) as svc:
        run = svc.status(run_id)
        if (state.config.cwd / run.run_id).exists():
            # `bt validate` takes a folder of that name first; over HTTP only runs are meant.
            raise ApiError(409, f"a file named {run.run_id} shadows the run in the server's folder")
        outcome = svc.validate(run.run_id, None, state.config.cwd)
    return BtJSONResponse(outcome.report.to_dict())


@router.get("/backtest/results/{run_id}", summary="A run's files (as `bt results --json`)")
def results(run_id: RunRef, request: Request) -> Response:
    with service(request) as svc:
        return BtJSONResponse(svc.results(run_id).to_dict())


CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".toml": "text/plain; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
}
CHUNK = 256 * 1024


def content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _disposition(name: str) -> str:
    plain = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _chunks(handle: BinaryIO, size: int) -> Iterator[bytes]:
    with handle:
        left = size  # what was there when the answer began: Content-Length must hold
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


@router.get(
    "/backtest/results/{run_id}/{name:path}",
    summary="Download one file of a run (as `bt results RUN FILE`)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download(run_id: RunRef, name: str, request: Request) -> Response:
    with service(request) as svc:
        # Opened by the same safe-path code as `bt results`: never a file outside the folder.
        handle = svc.result_file(run_id, name)
    size = os.fstat(handle.fileno()).st_size
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": _disposition(Path(name).name),
        # Result files are the script's output, not ours: never run as a page of this origin.
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }
    return StreamingResponse(_chunks(handle, size), media_type=content_type(name), headers=headers)


# --- health -------------------------------------------------------------------------------

PUBLIC_HEALTH = ("status", "timestamp", "active_runs", "queued_runs")


@router.get("/health", summary="Health and queue counts (as `bt health --json`); no token needed")
def health(request: Request) -> Response:
    data = state_of(request).health()
    if not request.state.authorized:
        # Without the token: status and counts only, no paths of this machine.
        data = {key: data[key] for key in PUBLIC_HEALTH}
    return BtJSONResponse(data, status_code=200 if data["status"] == "healthy" else 503)


# --- many runs: the same core as `bt sweep`, `bt compare` and `bt plot` -----------------------


def _sweep_space(params: dict[str, Any]) -> Any:
    """A JSON list is a key's values (literal); a string is a CLI SPEC; anything else one value."""
    from btmanager.sweeps.grid import Space
    from btmanager.sweeps.spec import parse_spec

    axes: list[tuple[str, list[str]]] = []
    for key, given in params.items():
        if isinstance(given, list):
            if not given:
                raise UsageError(f"Parameter {key!r}: an empty list of values")
            values = [param_text(key, item) for item in given]
        elif isinstance(given, str):
            param_text(key, given)
            values = list(parse_spec(key, given, f"params[{key!r}]"))
        else:
            values = [param_text(key, given)]
        axes.append((key, values))
    return Space(tuple(axes))


@router.post(
    "/backtest/sweep",
    status_code=202,
    dependencies=[Depends(submission_quota)],
    summary="Queue a sweep (as `bt sweep --json`)",
)
def submit_sweep(body: SweepBody, request: Request) -> Response:
    from btmanager.lifecycle.request import RunRequest
    from btmanager.sweeps.submit import SweepRequest

    state = state_of(request)
    script = _script(state, body.script)
    sweep_request = SweepRequest(
        base=RunRequest(
            script=str(script),
            cwd=state.config.cwd,
            rules=_rules(state),
            grace=DEFAULT_GRACE,
        ),
        space=_sweep_space(dict(body.params)),
        max_parallel=body.max_parallel,
        label=body.label,
    )
    with service(request) as svc:
        result = svc.sweep(sweep_request)
    return BtJSONResponse(result.to_dict(), status_code=202)


@router.get("/backtest/compare", summary="Compare runs (as `bt compare --json`)")
def compare(
    request: Request,
    sweep: str | None = None,
    sort: str | None = None,
    top: Annotated[int | None, Query(ge=1, le=INT64)] = None,
    status: str | None = None,
    label: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    script: str | None = None,
) -> Response:
    from btmanager.compare import CompareOptions

    with service(request) as svc:
        selection = svc.selection(sweep or None, label, tag, status or None, script or None)
        table = svc.compare([], selection, CompareOptions(sort=sort or None, top=top))
        return BtJSONResponse(table.to_dict())


@router.get("/backtest/plot/{run_id}", summary="A run's equity curve (as `bt plot --json`)")
def plot(run_id: RunRef, request: Request) -> Response:
    from btmanager.plot import PnlError

    with service(request) as svc:
        try:
            curves = svc.curves([run_id])
        except PnlError as exc:
            raise ApiError(404, str(exc)) from None
        return BtJSONResponse({"runs": [curve.to_dict() for curve in curves]})
