"""The plain-Python parts of `bt serve`: rate limiter, token, options, per-thread Services."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from btmanager.errors import StorageError, UsageError
from btmanager.serve.auth import is_loopback, load_token, token_matches
from btmanager.serve.config import Rate, script_folders
from btmanager.serve.ratelimit import RateLimiter, retry_after
from btmanager.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(3, 60.0), clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(20.0)  # one token back every 20 s
    assert limiter.take("b") == 0.0  # per client
    clock.now += 19.0
    assert limiter.take("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_token_bucket_has_no_window_boundary_burst() -> None:
    # A fixed window would allow 3 at 59.9 s and 3 more at 60.1 s; a bucket allows 3 + refill.
    clock = Clock()
    limiter = RateLimiter(Rate(3, 60.0), clock)
    clock.now += 59.9
    allowed = sum(limiter.take("a") == 0.0 for _ in range(3))
    clock.now += 0.2
    allowed += sum(limiter.take("a") == 0.0 for _ in range(3))
    assert allowed == 3


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after(0.01) == "1"
    assert retry_after(1.2) == "2"
    assert retry_after(20.0) == "20"


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("60/minute", 60, 60.0),
        ("5/second", 5, 1.0),
        ("100/hour", 100, 3600.0),
        (" 2 / minutes", 2, 60.0),
    ],
)
def test_rate_parse(text: str, count: int, period: float) -> None:
    assert Rate.parse(text) == Rate(count, period)


@pytest.mark.parametrize(
    "text", ["", "60", "0/minute", "-1/minute", "1.5/minute", "5/day", "x/minute"]
)
def test_rate_parse_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        Rate.parse(text)


def test_token_matching() -> None:
    token = "t" * 32
    assert token_matches(token, f"Bearer {token}")
    assert token_matches(token, f"bearer  {token} ")
    assert not token_matches(token, None)
    assert not token_matches(token, "")
    assert not token_matches(token, token)
    assert not token_matches(token, f"Basic {token}")
    assert not token_matches(token, f"Bearer {token}x")
    assert not token_matches(token, "Bearer ")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
     ("example.org", False)],
)  # fmt: skip
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_token_from_env_is_taken_out_of_the_environment(tmp_path: Path) -> None:
    env = {"BT_SERVE_TOKEN": "  an-env-token-0123456789 "}
    token = load_token(tmp_path, env)
    assert (token.value, token.source) == ("an-env-token-0123456789", "env")
    assert "BT_SERVE_TOKEN" not in env
    assert not (tmp_path / "serve.token").exists()
    with pytest.raises(UsageError):
        load_token(tmp_path, {"BT_SERVE_TOKEN": "short"})


def test_token_file_made_once_owner_only(tmp_path: Path) -> None:
    results = tmp_path / "results"
    made = load_token(results, {})
    assert made.source == "new" and len(made.value) >= 32
    path = results / "serve.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_token(results, {})
    assert (again.value, again.source) == (made.value, "file")
    os.chmod(path, 0o644)  # copied with a loose umask: tightened when read
    assert load_token(results, {}).value == made.value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_file_must_not_be_a_link_or_empty(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("x" * 40)
    results = tmp_path / "results"
    results.mkdir()
    (results / "serve.token").symlink_to(elsewhere)
    with pytest.raises(StorageError):
        load_token(results, {})
    (results / "serve.token").unlink()
    (results / "serve.token").write_text("\n")
    with pytest.raises(UsageError):
        load_token(results, {})


def test_script_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (tmp_path / "link").symlink_to(a)
    assert script_folders(tmp_path, {}) == (tmp_path.resolve(),)
    named = script_folders(tmp_path, {"BACKTEST_SCRIPTS_DIR": os.pathsep.join(["link", str(b)])})
    assert named == (a.resolve(), b.resolve())
    with pytest.raises(UsageError):
        script_folders(tmp_path, {"BACKTEST_SCRIPTS_DIR": str(tmp_path / "missing")})


def test_services_reopen_a_replaced_registry(tmp_path: Path, bt_registry: Path) -> None:
    from btmanager.serve.state import Services

    services = Services(Settings.resolve(str(bt_registry)))
    first = services.get()
    assert services.get() is first  # kept between requests of a thread
    db = bt_registry / "bt.sqlite3"
    copy = tmp_path / "copy.sqlite3"
    shutil.copyfile(db, copy)
    os.replace(copy, db)  # e.g. `bt registry rebuild`
    second = services.get()
    assert second is not first
    assert second.list_runs(second.selection(), None)[0] == 1
    services.discard()


@pytest.fixture
def bt_registry(tmp_path: Path) -> Path:
    from tests.helpers import bt_env, run_bt, write_script

    results = tmp_path / "results"
    write_script(tmp_path, "noop.py", "print('hi')\n")
    done = run_bt("run", "noop.py", "--no-validate", env=bt_env(results), cwd=tmp_path)
    assert done.code == 0, done.stderr
    return results


def test_unexpected_errors_are_500_without_details(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    import anyio
    import httpx

    from btmanager.serve.app import create_app
    from btmanager.serve.config import ServeConfig

    config = ServeConfig(
        settings=Settings.resolve(str(tmp_path / "results")),
        host="127.0.0.1",
        port=0,
        token="t" * 32,
        rate=Rate(10, 60.0),
        cors=(),
        cwd=tmp_path,
        script_folders=(tmp_path,),
    )
    app = create_app(config)

    @app.get("/api/explode")
    def explode() -> None:
        raise RuntimeError("a secret detail from deep inside")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get("/api/explode", headers={"Authorization": "Bearer " + "t" * 32})

    response = anyio.run(call)
    assert response.status_code == 500
    assert response.json() == {"success": False, "error": "internal error"}
    assert "secret" not in response.text and "Traceback" not in response.text
