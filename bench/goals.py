"""The goals of issue 5, each measured side by side with its baseline in the same run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datagen
from harness import (
    CommandFailed,
    Measure,
    Row,
    Sample,
    Series,
    fmt_bytes,
    fmt_seconds,
    import_summary,
    import_times,
    interleaved,
    py_spy,
    ratio_row,
    run_measured,
    skipped_row,
)

BASELINE = 'python -c "import typer, rich"'
MB = 1_000_000


@dataclass(frozen=True)
class Sizes:
    repeats: int  # recorded rounds of the quick commands
    warmup: int  # unrecorded rounds before them
    heavy_repeats: int  # rounds of the long measurements (queue drain, 1 GB files)
    queue_runs: int
    log_small: int
    log_big: int
    csv_size: int
    registry_small: int
    registry_big: int
    print_bytes: int
    sweep_big: int  # runs of the sweep submitted at once (goal 10) and compared (goal 11)
    plot_years: int  # years of daily rows in the plotted pnl.csv (goal 12)


FULL = Sizes(
    repeats=15,
    warmup=2,
    heavy_repeats=3,
    queue_runs=200,
    log_small=1 * MB,
    log_big=1000 * MB,
    csv_size=1000 * MB,
    registry_small=100,
    registry_big=100_000,
    print_bytes=1000 * MB,
    sweep_big=10_000,
    plot_years=10,
)

QUICK = Sizes(
    repeats=3,
    warmup=1,
    heavy_repeats=1,
    queue_runs=6,
    log_small=100_000,
    log_big=5 * MB,
    csv_size=2 * MB,
    registry_small=20,
    registry_big=2_000,
    print_bytes=5 * MB,
    sweep_big=300,
    plot_years=10,
)


@dataclass
class Context:
    bt: Path
    python: Path
    root: Path  # private temporary directory; removed at the end
    sizes: Sizes
    log: Callable[[str], None]
    notes: list[str] = field(default_factory=list)

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self, results: Path | None = None, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("BT_DB", "BT_MAX_PARALLEL", "BT_PYTHON", "BACKTEST_SCRIPTS_DIR", "NO_COLOR"):
            env.pop(name, None)
        env["TMPDIR"] = str(self.folder("tmp"))
        if results is not None:
            env["BT_RESULTS_DIR"] = str(results)
        env.update(extra)
        return env

    def bt_argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return [str(self.bt), *(os.fspath(arg) for arg in args)]

    def measure(
        self,
        argv: Sequence[str | os.PathLike[str]],
        cwd: Path,
        env: Mapping[str, str],
        ok_codes: Sequence[int] = (0,),
        capture: bool = False,
        stdout_file: Path | None = None,
    ) -> Measure:
        def run() -> Sample:
            return run_measured(
                argv,
                cwd=cwd,
                env=env,
                ok_codes=ok_codes,
                capture=capture,
                stdout_file=stdout_file,
            )

        return run

    def baseline(self, cwd: Path) -> Measure:
        return self.measure([self.python, "-c", "import typer, rich"], cwd, self.env())

    def run_bt(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str],
        cwd: Path,
        ok_codes: Sequence[int] = (0,),
    ) -> str:
        """Run `bt` unmeasured (set-up steps); its stdout."""
        return run_measured(
            self.bt_argv(*args), cwd=cwd, env=env, ok_codes=ok_codes, capture=True, rss=False
        ).stdout.decode()

    def python_can_import(self, module: str) -> bool:
        done = subprocess.run(
            [str(self.python), "-c", f"import {module}"],
            capture_output=True,
            env=self.env(),
            check=False,
        )
        return done.returncode == 0


# --- shared set-up ----------------------------------------------------------------------------


def seeded_results(ctx: Context, name: str, runs: int) -> tuple[Path, dict[str, str], str]:
    """A results folder whose registry holds `runs` finished runs; one is real (its id)."""
    results = ctx.folder(f"{name}/results")
    work = ctx.folder(f"{name}/work")
    script = datagen.write_script(work, "trivial.py", datagen.TRIVIAL_SCRIPT)
    env = ctx.env(results)
    out = ctx.run_bt("run", script, "--no-validate", "--json", env=env, cwd=work)
    run_id = str(json.loads(out)["run_id"])
    if runs > 1:
        datagen.fill_registry(results / "bt.sqlite3", run_id, runs - 1)
    return results, env, run_id


def processes_in(folder: Path) -> list[int]:
    """Pids whose working directory is inside `folder` (the drain workers `bt` spawned)."""
    found = []
    mine = os.getpid()
    prefix = str(folder.resolve())
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == mine:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == prefix or cwd.startswith(prefix + os.sep):
            found.append(int(entry))
    return found


def wait_quiet(results: Path, timeout: float = 120.0) -> None:
    """Until no run is queued or running and every worker process has exited."""
    deadline = time.monotonic() + timeout
    db = results / "bt.sqlite3"
    while time.monotonic() < deadline:
        if datagen.count_active(db) == 0 and not processes_in(results):
            return
        time.sleep(0.01)
    raise CommandFailed(f"runs in {results} did not finish within {timeout:g} s")


def _json(sample: Sample) -> dict[str, object]:
    data = json.loads(sample.stdout)
    assert isinstance(data, dict)
    return data


# --- goal 1: start-up of read commands ------------------------------------------------------


def _evidence(
    ctx: Context,
    series: Series,
    base: Series,
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
) -> str:
    """What a command costs beyond the baseline: CPU ratio and the imports it adds."""
    baseline_imports = import_times([ctx.python, "-c", "import typer, rich"], cwd=cwd, env=env)
    extra = import_summary(import_times(argv, cwd=cwd, env=env), baseline_imports)
    return f"CPU {series.cpu_median / base.cpu_median:.2f}x the baseline's; {extra}"


def goal_1(ctx: Context) -> list[Row]:
    ctx.log("goal 1: start-up of bt --help / status / list")
    _, env, run_id = seeded_results(ctx, "g1", ctx.sizes.registry_small)
    work = ctx.folder("g1/work")
    argv = {
        "help": ctx.bt_argv("--help"),
        "status": ctx.bt_argv("status", run_id, "--json"),
        "list": ctx.bt_argv("list", "--json"),
    }
    series = interleaved(
        {
            "base": ctx.baseline(work),
            "help": ctx.measure(argv["help"], work, env),
            "status": ctx.measure(argv["status"], work, env),
            "list": ctx.measure(argv["list"], work, env),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    base = series["base"]
    runs = f"registry of {ctx.sizes.registry_small} runs"

    def why(name: str) -> str:
        return _evidence(ctx, series[name], base, argv[name], env, work)

    return [
        ratio_row(
            "1",
            "`bt --help`",
            BASELINE,
            series["help"],
            base,
            1.3,
            why("help"),
        ),
        ratio_row(
            "1",
            "`bt status <id> --json`",
            BASELINE,
            series["status"],
            base,
            1.3,
            f"{runs}; {why('status')}",
        ),
        ratio_row(
            "1", "`bt list --json`", BASELINE, series["list"], base, 1.3, f"{runs}; {why('list')}"
        ),
    ]


# --- goal 2: foreground run overhead ----------------------------------------------------------


def validation_available(ctx: Context) -> bool:
    return ctx.python_can_import("btmanager.validation.engine, btmanager.validation.rules")


def goal_2(ctx: Context) -> list[Row]:
    what = "foreground `bt run` (small valid outputs, validated): added time"
    base_what = "script run directly; added time vs " + BASELINE
    if not validation_available(ctx):
        return [skipped_row("2", what, base_what, "<= 1.5x", "btmanager.validation is missing")]
    ctx.log("goal 2: foreground bt run overhead")
    results = ctx.folder("g2/results")
    work = ctx.folder("g2/work")
    direct_out = ctx.folder("g2/direct_out")
    script = datagen.write_script(work, "valid_outputs.py", datagen.VALID_OUTPUTS_SCRIPT)
    env = ctx.env(results)
    series = interleaved(
        {
            "base": ctx.baseline(work),
            "direct": ctx.measure(
                [ctx.python, script, "--output_dir", direct_out], work, ctx.env()
            ),
            # exit 0 = completed, so validation passed
            "bt": ctx.measure(ctx.bt_argv("run", script), work, env),
            # the same without the human summary and report, and without validation too
            "json": ctx.measure(ctx.bt_argv("run", script, "--json"), work, env),
            "bare": ctx.measure(ctx.bt_argv("run", script, "--json", "--no-validate"), work, env),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    base, direct, bt = series["base"], series["direct"], series["bt"]
    added = bt.median - direct.median
    ratio = added / base.median
    bare = series["bare"].median - direct.median
    validation = series["json"].median - series["bare"].median
    summary = bt.median - series["json"].median
    return [
        Row(
            "2",
            what,
            base_what,
            f"{fmt_seconds(added)} added (bt run {bt.time_text()})",
            f"direct {direct.time_text()}; baseline {base.time_text()}",
            f"{ratio:.2f}x",
            "added <= 1.5x baseline",
            ratio <= 1.5,
            "output not a terminal: the summary and report are plain text (no Rich import)",
        ),
        Row(
            "2",
            "where the added time goes (medians of variants measured alongside)",
            "-",
            f"{fmt_seconds(bare)} `bt run --json --no-validate` (start-up, registry, run "
            f"folder, supervision); +{fmt_seconds(validation)} validation (`--json`); "
            f"+{fmt_seconds(summary)} summary and report",
            f"baseline (Python + Typer start-up alone) {fmt_seconds(base.median)}",
            f"{bare / base.median:.2f}x / {validation / base.median:.2f}x / "
            f"{summary / base.median:.2f}x",
            "(information)",
            None,
            "bt's own start-up is the row-1 baseline: 1.0x of the 1.5x budget before any work",
        ),
    ]


# --- goal 3: submit latency -------------------------------------------------------------------


def goal_3(ctx: Context) -> list[Row]:
    ctx.log("goal 3: bt run -d submit latency")
    results = ctx.folder("g3/results")
    work = ctx.folder("g3/work")
    script = datagen.write_script(work, "trivial.py", datagen.TRIVIAL_SCRIPT)
    env = ctx.env(results)
    # One foreground run creates the registry outside the timing (read commands do not).
    ctx.run_bt("run", script, "--no-validate", "--json", env=env, cwd=work)
    submit_once = ctx.measure(
        ctx.bt_argv("run", "-d", script, "--no-validate"), work, env, capture=True
    )

    def submit() -> Sample:
        sample = submit_once()
        wait_quiet(results)  # the queue drains between samples, untimed
        return sample

    series = interleaved(
        {"base": ctx.baseline(work), "submit": submit}, ctx.sizes.repeats, ctx.sizes.warmup
    )
    return [
        ratio_row(
            "3",
            "`bt run -d` submit latency",
            BASELINE,
            series["submit"],
            series["base"],
            1.5,
            "free slots: includes spawning the drain worker; queue drained between samples; "
            f"CPU {series['submit'].cpu_median / series['base'].cpu_median:.2f}x the baseline's "
            "(the rest is waiting: registry commit and checkpoint I/O, the spawned worker "
            "competing for the CPUs)",
        )
    ]


# --- goal 4: draining a queue against task-spooler -------------------------------------------


def _drain_bt(ctx: Context, rep: int, script: Path, work: Path) -> tuple[float, float]:
    """(seconds from first submit to last completion, seconds of the submit phase)."""
    results = ctx.folder(f"g4/bt{rep}")
    env = ctx.env(results, BT_MAX_PARALLEL="2")
    ctx.run_bt("run", script, "--no-validate", "--json", env=env, cwd=work)  # the registry
    submit = ctx.bt_argv("run", "-d", script, "--no-validate")
    start = time.perf_counter()
    ids = [
        run_measured(submit, cwd=work, env=env, capture=True, rss=False).stdout.decode().strip()
        for _ in range(ctx.sizes.queue_runs)
    ]
    submitted = time.perf_counter()
    run_measured(ctx.bt_argv("wait", *ids), cwd=work, env=env, timeout=1800, rss=False)
    elapsed = time.perf_counter() - start
    wait_quiet(results)
    return elapsed, submitted - start


def _drain_bt_worker(ctx: Context, rep: int, script: Path, work: Path) -> float:
    """Seconds for a `bt worker --max-parallel 2` to execute N runs queued beforehand."""
    results = ctx.folder(f"g4/worker{rep}")
    env = ctx.env(results, BT_MAX_PARALLEL="2")
    template = ctx.run_bt("run", "-d", script, "--no-validate", env=env, cwd=work).strip()
    wait_quiet(results)
    db = results / "bt.sqlite3"
    datagen.queue_copies(db, template, ctx.sizes.queue_runs)
    start = time.perf_counter()
    worker = _start_worker(ctx, work, env, ["--max-parallel", "2"])
    return _timed_drain(ctx, db, worker, start, "bt worker")


def _start_worker(
    ctx: Context, work: Path, env: Mapping[str, str], args: Sequence[str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ctx.bt_argv("worker", *args),
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


STOP_GRACE = 120.0


def _stop_worker(worker: subprocess.Popen[bytes], what: str) -> None:
    """SIGTERM, then wait: a worker that is still there after STOP_GRACE is a failed command
    (its threads' stacks are shown when py-spy is installed), killed so the benchmark goes on."""
    worker.terminate()
    try:
        worker.wait(STOP_GRACE)
        return
    except subprocess.TimeoutExpired:
        pass
    spy = py_spy()
    if spy is not None:
        subprocess.run([spy, "dump", "--pid", str(worker.pid)], check=False)
    worker.kill()
    worker.wait()
    raise CommandFailed(f"{what} still ran {STOP_GRACE:.0f} s after SIGTERM")


def _timed_drain(
    ctx: Context, db: Path, worker: subprocess.Popen[bytes], start: float, what: str
) -> float:
    """Seconds from `start` until no run is queued or running; then `worker` is stopped and
    every run must have completed."""
    try:
        deadline = start + 1800
        while datagen.count_active(db) and time.perf_counter() < deadline:
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
    finally:
        _stop_worker(worker, what)
    counts = datagen.count_by_status(db)
    if counts.get("completed") != ctx.sizes.queue_runs + 1:
        raise CommandFailed(f"{what} drained {counts}, not {ctx.sizes.queue_runs + 1} completed")
    return elapsed


def _drain_tsp(
    ctx: Context, rep: int, tsp: str, script: Path, work: Path, goal: str = "g4"
) -> float:
    folder = ctx.folder(f"{goal}/tsp{rep}")
    env = ctx.env(
        TS_SOCKET=str(folder / "socket"),
        TMPDIR=str(folder),
        TS_SLOTS="2",
        TS_MAXFINISHED=str(ctx.sizes.queue_runs + 10),
    )
    subprocess.run([tsp, "-S", "2"], env=env, check=True, cwd=work)  # starts the server
    try:
        start = time.perf_counter()
        ids = [
            run_measured(
                [tsp, str(ctx.python), str(script)], cwd=work, env=env, capture=True, rss=False
            )
            .stdout.decode()
            .strip()
            for _ in range(ctx.sizes.queue_runs)
        ]
        for job in ids:  # `tsp -w` exits with the job's exit code
            run_measured([tsp, "-w", job], cwd=work, env=env, rss=False)
        return time.perf_counter() - start
    finally:
        subprocess.run([tsp, "-K"], env=env, check=False, cwd=work, capture_output=True)


def goal_4(ctx: Context) -> list[Row]:
    n = ctx.sizes.queue_runs
    what = f"drain {n} queued trivial runs, `BT_MAX_PARALLEL=2` (runs/s)"
    base_what = f"task-spooler `tsp`, 2 slots, same {n} commands"
    tsp = shutil.which("tsp")
    if tsp is None:
        return [skipped_row("4", what, base_what, ">= 0.5x", "tsp (task-spooler) not installed")]
    ctx.log(f"goal 4: draining {n} runs, bt vs tsp")
    work = ctx.folder("g4/work")
    script = datagen.write_script(work, "trivial.py", datagen.TRIVIAL_SCRIPT)
    bt_times, submit_times, tsp_times = Series("bt"), [], Series("tsp")
    worker_times = Series("worker")
    for rep in range(ctx.sizes.heavy_repeats):
        elapsed, submit_phase = _drain_bt(ctx, rep, script, work)
        bt_times.samples.append(Sample(elapsed, 0, 0))
        submit_times.append(submit_phase)
        tsp_times.samples.append(Sample(_drain_tsp(ctx, rep, tsp, script, work), 0, 0))
        worker_times.samples.append(Sample(_drain_bt_worker(ctx, rep, script, work), 0, 0))
    worker_rate = n / worker_times.median
    bt_rate, tsp_rate = n / bt_times.median, n / tsp_times.median
    ratio = bt_rate / tsp_rate
    submit_median = sorted(submit_times)[len(submit_times) // 2]
    return [
        Row(
            "4",
            what,
            base_what,
            f"{bt_rate:.1f} runs/s ({bt_times.time_text()} total)",
            f"{tsp_rate:.1f} runs/s ({tsp_times.time_text()} total)",
            f"{ratio:.2f}x",
            ">= 0.5x",
            ratio >= 0.5,
            f"submission included for both (bt: {n} sequential `bt run -d --no-validate`, "
            f"{fmt_seconds(submit_median)} of it; then `bt wait` on all, which polls every "
            "0.2 s); tsp: enqueue, then `tsp -w` each job",
        ),
        Row(
            "4",
            f"execution only: `bt worker --max-parallel 2` draining {n} runs queued beforehand",
            base_what,
            f"{worker_rate:.1f} runs/s ({worker_times.time_text()} total)",
            f"{tsp_rate:.1f} runs/s ({tsp_times.time_text()} total)",
            f"{worker_rate / tsp_rate:.2f}x",
            "(information)",
            None,
            "runs inserted into the registry with sqlite3 (no `bt run -d`, no spawned workers); "
            "shows how much of the gap is submission",
        ),
    ]


# --- goal 5: logs of a 1 GB file ----------------------------------------------------------------


def goal_5(ctx: Context) -> list[Row]:
    small, big = ctx.sizes.log_small, ctx.sizes.log_big
    ctx.log(f"goal 5: bt logs on {fmt_bytes(big)} vs {fmt_bytes(small)}")
    _, env, _ = seeded_results(ctx, "g5", 1)
    work = ctx.folder("g5/work")
    script = work / "trivial.py"
    ids: dict[str, str] = {}
    lines: dict[str, int] = {}
    for name, size in (("big", big), ("small", small)):
        out = ctx.run_bt("run", script, "--no-validate", "--json", env=env, cwd=work)
        status = json.loads(out)
        ids[name] = str(status["run_id"])
        lines[name] = datagen.write_log(Path(status["output_dir"]) / "execution.log", size)
    # The first call counts the whole log once and caches (size, lines) in the registry.
    first = run_measured(
        ctx.bt_argv("logs", ids["big"], "-n", "100", "--json"), cwd=work, env=env, capture=True
    )
    if _json(first)["total_lines"] != lines["big"]:
        raise CommandFailed(f"bt logs counted {_json(first)['total_lines']}, not {lines['big']}")
    series = interleaved(
        {
            "big": ctx.measure(ctx.bt_argv("logs", ids["big"], "-n", "100"), work, env),
            "small": ctx.measure(ctx.bt_argv("logs", ids["small"], "-n", "100"), work, env),
            "big_json": ctx.measure(
                ctx.bt_argv("logs", ids["big"], "-n", "100", "--json"), work, env, capture=True
            ),
            "small_json": ctx.measure(
                ctx.bt_argv("logs", ids["small"], "-n", "100", "--json"), work, env, capture=True
            ),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    for name in ("big", "small"):
        doc = _json(series[f"{name}_json"].samples[-1])
        got = doc["lines"]
        if doc["total_lines"] != lines[name] or not isinstance(got, list) or len(got) != 100:
            raise CommandFailed(f"bt logs --json on the {name} log: wrong total_lines or lines")
    cache_note = (
        f"after one warm-up call that counts the log and caches size + line count in the "
        f"registry (by design; that first call took {fmt_seconds(first.seconds)} on "
        f"{fmt_bytes(big)})"
    )
    return [
        ratio_row(
            "5",
            f"`bt logs -n 100`, {fmt_bytes(big)} log",
            f"same, {fmt_bytes(small)} log",
            series["big"],
            series["small"],
            1.2,
            cache_note,
        ),
        ratio_row(
            "5",
            f"`bt logs -n 100 --json`, {fmt_bytes(big)} log",
            f"same, {fmt_bytes(small)} log",
            series["big_json"],
            series["small_json"],
            1.2,
            "total_lines checked exact",
        ),
    ]


# --- goal 6: validating a 1 GB trades.csv -----------------------------------------------------

_POLARS = (
    "import sys, polars as pl; "
    "print(pl.scan_csv(sys.argv[1], infer_schema_length=10000).null_count().collect())"
)


def goal_6(ctx: Context) -> list[Row]:
    size = ctx.sizes.csv_size
    what = f"`bt validate` of a {fmt_bytes(size)} trades.csv (+ valid pnl/summary)"
    base_what = "polars `scan_csv(...).null_count()` of the same file"
    if not validation_available(ctx):
        return [
            skipped_row(
                "6", what + ": throughput", base_what, ">= 0.5x", "btmanager.validation is missing"
            ),
            skipped_row(
                "6", what + ": peak RSS", "-", "<= 400 MB", "btmanager.validation is missing"
            ),
        ]
    has_polars = ctx.python_can_import("polars")
    ctx.log(f"goal 6: bt validate of {fmt_bytes(size)}" + ("" if has_polars else " (no polars)"))
    folder = ctx.folder("g6/outputs")
    work = ctx.folder("g6/work")
    rows = datagen.write_validation_dir(folder, size)
    trades = folder / "trades.csv"
    actual = trades.stat().st_size
    with open(trades, "rb") as handle:  # into the page cache for everyone alike
        while handle.read(16 * MB):
            pass
    measures: dict[str, Measure] = {
        "bt": ctx.measure(ctx.bt_argv("validate", folder, "--json"), work, ctx.env(), capture=True)
    }
    if has_polars:
        measures["polars"] = ctx.measure([ctx.python, "-c", _POLARS, trades], work, ctx.env())
    series = interleaved(measures, ctx.sizes.heavy_repeats, 0)
    report = _json(series["bt"].samples[-1])
    checks = report.get("file_checks")
    counted = checks.get("trades.csv", {}).get("row_count") if isinstance(checks, dict) else None
    if report.get("valid") is not True or counted != rows:
        raise CommandFailed(
            f"bt validate: valid={report.get('valid')} row_count={counted} (expected {rows}); "
            f"errors: {report.get('errors')}"
        )
    bt = series["bt"]
    bt_rate = actual / bt.median / MB
    out: list[Row] = []
    if has_polars:
        polars = series["polars"]
        polars_rate = actual / polars.median / MB
        ratio = bt_rate / polars_rate
        out.append(
            Row(
                "6",
                what + ": throughput",
                base_what,
                f"{bt_rate:.1f} MB/s ({bt.time_text()})",
                f"{polars_rate:.1f} MB/s ({polars.time_text()})",
                f"{ratio:.2f}x",
                ">= 0.5x",
                ratio >= 0.5,
                f"{rows} rows, file in page cache; polars peak RSS "
                f"{fmt_bytes(polars.peak_rss)}; {os.cpu_count()} cores",
            )
        )
    else:
        out.append(
            skipped_row(
                "6",
                what + ": throughput",
                base_what,
                ">= 0.5x",
                "polars not installed (pip install -r bench/requirements.txt)",
            )
        )
    peak = bt.peak_rss
    out.append(
        Row(
            "6",
            what + ": peak RSS",
            "-",
            fmt_bytes(peak),
            "-",
            "-",
            "<= 400 MB",
            peak <= 400 * 2**20,
            "ru_maxrss of the bt process (os.wait4 in a ~10 MB wrapper)",
        )
    )
    return out


# --- goal 7: listing a big registry -----------------------------------------------------------


def goal_7(ctx: Context) -> list[Row]:
    small, big = ctx.sizes.registry_small, ctx.sizes.registry_big
    ctx.log(f"goal 7: bt list with {big} vs {small} runs")
    _, env_small, id_small = seeded_results(ctx, "g7small", small)
    _, env_big, id_big = seeded_results(ctx, "g7big", big)
    work = ctx.folder("g7big/work")
    list_argv = ("list", "--limit", "50", "--json")
    series = interleaved(
        {
            "big": ctx.measure(ctx.bt_argv(*list_argv), work, env_big, capture=True),
            "small": ctx.measure(ctx.bt_argv(*list_argv), work, env_small, capture=True),
            "status_big": ctx.measure(ctx.bt_argv("status", id_big, "--json"), work, env_big),
            "status_small": ctx.measure(ctx.bt_argv("status", id_small, "--json"), work, env_small),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    for name, count in (("big", big), ("small", small)):
        doc = _json(series[name].samples[-1])
        listed = doc["runs"]
        if doc["total"] != count or not isinstance(listed, list) or len(listed) != min(50, count):
            raise CommandFailed(f"bt list --json on {count} runs: total {doc['total']}")
    status_ratio = series["status_big"].median / series["status_small"].median
    return [
        ratio_row(
            "7",
            f"`bt list --limit 50 --json`, {big} runs",
            f"same, {small} runs",
            series["big"],
            series["small"],
            1.2,
            "rows inserted with sqlite3, shaped like a real run",
        ),
        Row(
            "7",
            f"`bt status <full id> --json`, {big} runs",
            f"same, {small} runs",
            series["status_big"].time_text(),
            series["status_small"].time_text(),
            f"{status_ratio:.2f}x",
            "(information)",
            None,
            "not a goal; id lookup cost",
        ),
    ]


# --- goal 8: memory while a script prints 1 GB ----------------------------------------------


def goal_8(ctx: Context) -> list[Row]:
    size = ctx.sizes.print_bytes
    ctx.log(f"goal 8: bt run of a script printing {fmt_bytes(size)}")
    results = ctx.folder("g8/results")
    work = ctx.folder("g8/work")
    script = datagen.write_script(work, "print_bytes.py", datagen.PRINT_BYTES_SCRIPT)
    env = ctx.env(results)
    direct_file = work / "direct.out"
    run_once = ctx.measure(
        ctx.bt_argv("run", script, "-p", f"bytes={size}", "--no-validate"), work, env
    )
    complete: list[bool] = []

    def bt_run() -> Sample:
        sample = run_once()
        status = json.loads(ctx.run_bt("status", "latest", "--json", env=env, cwd=work))
        log = Path(status["output_dir"]) / "execution.log"
        complete.append(log.stat().st_size == size and status["status"] == "completed")
        log.unlink()  # never keep gigabytes around
        return sample

    def direct() -> Sample:
        sample = ctx.measure(
            [ctx.python, script, "--bytes", str(size)], work, ctx.env(), stdout_file=direct_file
        )()
        direct_file.unlink()
        return sample

    series = interleaved({"bt": bt_run, "direct": direct}, ctx.sizes.heavy_repeats, 0)
    bt = series["bt"]
    peak = bt.peak_rss
    ok = all(complete)
    return [
        Row(
            "8",
            f"peak RSS of `bt run` while the script prints {fmt_bytes(size)} to stdout",
            "-",
            fmt_bytes(peak),
            "-",
            "-",
            "<= 100 MB, log complete",
            peak <= 100 * 2**20 and ok,
            f"log complete: {'yes' if ok else 'NO'} (execution.log size checked); "
            f"`--no-validate`; ru_maxrss of bt and what it waits for: its supervisor, which reaps "
            "the script (os.wait4 in a ~10 MB wrapper)",
        ),
        Row(
            "8",
            "its wall time (output mirrored to /dev/null)",
            "the script alone, stdout to a file",
            bt.time_text(),
            series["direct"].time_text(),
            f"{bt.median / series['direct'].median:.2f}x",
            "(information)",
            None,
            "",
        ),
    ]


# --- goal 9: a sweep of trivial runs against task-spooler -------------------------------------


def goal_9(ctx: Context) -> list[Row]:
    n = ctx.sizes.queue_runs
    what = f"`bt sweep ... --wait` of {n} trivial runs, `BT_MAX_PARALLEL=2` (runs/s)"
    base_what = f"task-spooler `tsp`, 2 slots, same {n} commands"
    tsp = shutil.which("tsp")
    ctx.log(f"goal 9: one bt sweep of {n} runs" + ("" if tsp else " (no tsp)"))
    work = ctx.folder("g9/work")
    script = datagen.write_script(work, "trivial.py", datagen.TRIVIAL_SCRIPT)
    bt_times, tsp_times = Series("bt"), Series("tsp")
    for rep in range(ctx.sizes.heavy_repeats):
        results = ctx.folder(f"g9/bt{rep}")
        env = ctx.env(results, BT_MAX_PARALLEL="2")
        argv = ctx.bt_argv("sweep", script, "--no-validate", "-p", f"i=1:{n}:1", "--wait")
        start = time.perf_counter()
        run_measured(argv, cwd=work, env=env, timeout=1800, rss=False)
        bt_times.samples.append(Sample(time.perf_counter() - start, 0, 0))
        counts = datagen.count_by_status(results / "bt.sqlite3")
        if counts.get("completed") != n:
            raise CommandFailed(f"bt sweep --wait ended with {counts}, not {n} completed")
        wait_quiet(results)
        if tsp is not None:
            tsp_times.samples.append(Sample(_drain_tsp(ctx, rep, tsp, script, work, "g9"), 0, 0))
    bt_rate = n / bt_times.median
    note = "submission included for both: one `bt sweep` queues all and waits; tsp: enqueue, then `tsp -w` each job"
    if tsp is None:
        return [
            Row(
                "9", what, base_what, f"{bt_rate:.1f} runs/s ({bt_times.time_text()} total)",
                "-", "-", ">= 0.5x", None, "skipped: tsp (task-spooler) not installed",
            )
        ]  # fmt: skip
    tsp_rate = n / tsp_times.median
    ratio = bt_rate / tsp_rate
    return [
        Row(
            "9", what, base_what, f"{bt_rate:.1f} runs/s ({bt_times.time_text()} total)",
            f"{tsp_rate:.1f} runs/s ({tsp_times.time_text()} total)", f"{ratio:.2f}x", ">= 0.5x",
            ratio >= 0.5, note,
        )
    ]  # fmt: skip


# --- goal 10: submitting a 10 000-run sweep --------------------------------------------------


def goal_10(ctx: Context) -> list[Row]:
    n = ctx.sizes.sweep_big
    ctx.log(f"goal 10: bt sweep of {n} runs vs one bt run -d")
    results = ctx.folder("g10/results")
    work = ctx.folder("g10/work")
    script = datagen.write_script(work, "trivial.py", datagen.TRIVIAL_SCRIPT)
    gate_script = datagen.write_script(work, "gate.py", datagen.GATE_SCRIPT)
    gate = work / "gate-open"
    env = ctx.env(results, BT_MAX_PARALLEL="1")
    db = results / "bt.sqlite3"
    # One run holds the only slot: what both commands queue stays queued, nothing executes.
    ctx.run_bt("run", "-d", gate_script, "--no-validate", "-p", f"gate={gate}", env=env, cwd=work)
    deadline = time.monotonic() + 60
    while datagen.count_by_status(db).get("running", 0) != 1:
        if time.monotonic() > deadline:
            raise CommandFailed("the gate run did not start within 60 s")
        time.sleep(0.05)
    sweep = ctx.bt_argv(
        "sweep", script, "--no-validate", "-p", f"i=1:{n}:1", "--max-runs", str(n), "--json"
    )
    try:
        series = interleaved(
            {
                "sweep": ctx.measure(sweep, work, env, capture=True),
                "run": ctx.measure(ctx.bt_argv("run", "-d", script, "--no-validate"), work, env),
            },
            min(ctx.sizes.repeats, 10),
            ctx.sizes.warmup,
        )
        document = _json(series["sweep"].samples[-1])
        if document.get("count") != n or len(document.get("run_ids", [])) != n:  # type: ignore[arg-type]
            raise CommandFailed(f"bt sweep --json said count {document.get('count')}, not {n}")
    finally:
        datagen.cancel_queued(db)
        gate.touch()
        wait_quiet(results)
    return [
        ratio_row(
            "10",
            f"`bt sweep` queueing {n} runs (one command, one transaction)",
            "one `bt run -d` in the same registry",
            series["sweep"],
            series["run"],
            3.0,
            "the only slot is held by a gate run, so both only queue (no worker is spawned); "
            f"CPU {series['sweep'].cpu_median / series['run'].cpu_median:.2f}x; run folders "
            "and run.json files of a sweep are made when each run starts",
        )
    ]


# --- goal 13: reads while runs are running and a writer holds the registry -------------------

GATED_SCRIPT = """
import os, sys, time
gate = sys.argv[sys.argv.index("--gate") + 1]
deadline = time.time() + 600
while not os.path.exists(gate) and time.time() < deadline:
    time.sleep(0.05)
"""


def goal_13(ctx: Context) -> list[Row]:
    """`bt list --json` must not wait on writers: read-only connections in WAL mode."""
    import sqlite3

    small = ctx.sizes.registry_small
    ctx.log("goal 13: bt list --json while 2 runs run and a writer holds the registry")
    busy_results, env_busy, _ = seeded_results(ctx, "g13busy", small)
    _, env_idle, _ = seeded_results(ctx, "g13idle", small)
    work = ctx.folder("g13busy/work")
    script = datagen.write_script(work, "gated.py", GATED_SCRIPT)
    gate = work / "gate"
    env_submit = {**env_busy, "BT_MAX_PARALLEL": "2"}
    for _ in range(2):
        ctx.run_bt(
            "run", "-d", "--no-validate", script, "-p", f"gate={gate}", env=env_submit, cwd=work
        )
    db_path = busy_results / "bt.sqlite3"
    deadline = time.monotonic() + 60
    while datagen.count_running(db_path) < 2:
        if time.monotonic() > deadline:
            raise CommandFailed("the two gated runs did not start")
        time.sleep(0.05)
    writer = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE runs SET label = label WHERE seq = 1")
        series = interleaved(
            {
                "busy": ctx.measure(ctx.bt_argv("list", "--json"), work, env_busy, capture=True),
                "idle": ctx.measure(ctx.bt_argv("list", "--json"), work, env_idle, capture=True),
            },
            ctx.sizes.repeats,
            ctx.sizes.warmup,
        )
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        gate.touch()
    wait_quiet(busy_results)
    running = [r for r in _json(series["busy"].samples[-1])["runs"] if r["status"] == "running"]  # type: ignore[union-attr]
    if len(running) != 2:
        raise CommandFailed(f"bt list saw {len(running)} running runs, not 2")
    return [
        ratio_row(
            "13",
            "`bt list --json` while 2 runs run and another process holds the write lock",
            f"same, idle registry ({small} runs)",
            series["busy"],
            series["idle"],
            1.2,
            "reads open the registry read-only (WAL): they never wait for a writer",
        )
    ]


# --- goal 11: comparing a 10 000-run sweep --------------------------------------------------


def goal_11(ctx: Context) -> list[Row]:
    n = ctx.sizes.sweep_big
    what = f"`bt compare --sweep S --sort -sharpe_ratio --top 20 --json`, {n} runs"
    if not validation_available(ctx):
        return [skipped_row("11", what, "`bt status <id> --json`", "<= 1.5x", "no validation")]
    ctx.log(f"goal 11: bt compare over a {n}-run sweep")
    results = ctx.folder("g11/results")
    work = ctx.folder("g11/work")
    script = datagen.write_script(work, "valid_outputs.py", datagen.VALID_OUTPUTS_SCRIPT)
    env = ctx.env(results)
    run_id = str(json.loads(ctx.run_bt("run", script, "--json", env=env, cwd=work))["run_id"])
    datagen.fill_sweep(results / "bt.sqlite3", run_id, "sweep_00bench0", n)
    compare = ctx.bt_argv(
        "compare", "--sweep", "sweep_00bench0", "--sort", "-sharpe_ratio", "--top", "20", "--json"
    )
    series = interleaved(
        {
            "compare": ctx.measure(compare, work, env, capture=True),
            "status": ctx.measure(ctx.bt_argv("status", run_id, "--json"), work, env),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    document = _json(series["compare"].samples[-1])
    rows = document["runs"]
    values = [row["metrics"]["sharpe_ratio"] for row in rows]  # type: ignore[index]
    if len(rows) != min(20, n) or values != sorted(values, reverse=True):  # type: ignore[arg-type]
        raise CommandFailed("bt compare --top 20 did not return 20 rows sorted by sharpe_ratio")
    return [
        ratio_row(
            "11", what, "`bt status <id> --json`, same registry", series["compare"],
            series["status"], 1.5,
            "sweep rows and their metrics inserted with sqlite3 (shaped like a real run); the "
            "sort and the top 20 happen in SQL",
        )
    ]  # fmt: skip


# --- goal 12: plotting ten years of daily pnl ---------------------------------------------------


def goal_12(ctx: Context) -> list[Row]:
    years = ctx.sizes.plot_years
    ctx.log(f"goal 12: bt plot of {years} years of daily pnl")
    _, env, run_id = seeded_results(ctx, "g12", 1)
    work = ctx.folder("g12/work")
    status = json.loads(ctx.run_bt("status", run_id, "--json", env=env, cwd=work))
    rows = datagen.write_pnl(Path(status["output_dir"]) / "pnl.csv", years)
    series = interleaved(
        {
            "plot": ctx.measure(ctx.bt_argv("plot", run_id), work, env, capture=True),
            "status": ctx.measure(ctx.bt_argv("status", run_id), work, env),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    drawn = series["plot"].samples[-1].stdout.decode()
    if "Equity" not in drawn or not drawn.isascii():
        raise CommandFailed("bt plot did not draw the equity curve in plain characters")
    return [
        ratio_row(
            "12", f"`bt plot <id>`, {years} years of daily pnl.csv ({rows} rows)",
            "`bt status <id>` (plain text)", series["plot"], series["status"], 2.0,
            "stdout is not a terminal: ASCII plot; plotext imported by bt plot alone",
        )
    ]  # fmt: skip


# --- goal 15: draining the queue on a local Dask cluster ---------------------------------------


def _dask_serving(ctx: Context, env: Mapping[str, str], work: Path) -> bool:
    out = ctx.run_bt("health", "--json", env=env, cwd=work, ok_codes=(0, 1))
    return bool(json.loads(out).get("dask"))


def _drain_ready_worker(
    ctx: Context, name: str, rep: int, script: Path, work: Path, worker_args: Sequence[str]
) -> float:
    """Seconds for an already started, idle `bt worker WORKER_ARGS` to execute N runs queued
    at once (inserted into the registry): execution only, without start-up or submission."""
    results = ctx.folder(f"g10/{name}{rep}")
    env = ctx.env(
        results, BT_MAX_PARALLEL="2", DASK_TEMPORARY_DIRECTORY=str(ctx.folder(f"g10/dask{rep}"))
    )
    template = ctx.run_bt("run", "-d", script, "--no-validate", env=env, cwd=work).strip()
    wait_quiet(results)
    db = results / "bt.sqlite3"
    what = f"bt worker {' '.join(worker_args)}"
    worker = _start_worker(ctx, work, env, worker_args)
    deadline = time.monotonic() + 300
    while "--dask" in worker_args and not _dask_serving(ctx, env, work):
        if worker.poll() is not None or time.monotonic() > deadline:
            _stop_worker(worker, what)
            raise CommandFailed(f"{what} did not start serving")
        time.sleep(0.2)
    datagen.queue_copies(db, template, ctx.sizes.queue_runs)
    return _timed_drain(ctx, db, worker, time.perf_counter(), what)


def goal_15(ctx: Context) -> list[Row]:
    n = ctx.sizes.queue_runs
    what = f"`bt worker --dask local:2` draining {n} queued trivial runs (runs/s)"
    base_what = f"`bt worker --max-parallel 2` (local), same {n} runs"
    if not ctx.python_can_import("distributed"):
        return [skipped_row("15", what, base_what, ">= 0.5x", "extra `dask` not installed")]
    ctx.log(f"goal 15: draining {n} runs on a 2-process local Dask cluster vs locally")
    work = ctx.folder("g10/work")
    script = datagen.write_script(work, "trivial.py", datagen.TRIVIAL_SCRIPT)
    dask_times, local_times = Series("dask"), Series("local")
    for rep in range(ctx.sizes.heavy_repeats):
        local_times.samples.append(
            Sample(
                _drain_ready_worker(ctx, "local", rep, script, work, ["--max-parallel", "2"]), 0, 0
            )
        )
        dask_times.samples.append(
            Sample(_drain_ready_worker(ctx, "dask", rep, script, work, ["--dask", "local:2"]), 0, 0)
        )
    dask_rate, local_rate = n / dask_times.median, n / local_times.median
    ratio = dask_rate / local_rate
    return [
        Row(
            "15",
            what,
            base_what,
            f"{dask_rate:.1f} runs/s ({dask_times.time_text()} total)",
            f"{local_rate:.1f} runs/s ({local_times.time_text()} total)",
            f"{ratio:.2f}x",
            ">= 0.5x",
            ratio >= 0.5,
            "both workers started and idle first (the cluster's start-up is not counted), then "
            "the runs inserted into the registry at once; timed until none is queued or running",
        )
    ]


GOALS: dict[str, Callable[[Context], list[Row]]] = {
    "1": goal_1,
    "2": goal_2,
    "3": goal_3,
    "4": goal_4,
    "5": goal_5,
    "6": goal_6,
    "7": goal_7,
    "8": goal_8,
    "9": goal_9,
    "10": goal_10,
    "11": goal_11,
    "12": goal_12,
    "13": goal_13,
    "15": goal_15,
}

# Goal 14 (`bt serve`) lives in its own module; it needs the names above, hence the late import.
from serve_bench import goal_14  # noqa: E402

GOALS["14"] = goal_14
