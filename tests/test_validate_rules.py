"""Rules files (`--rules FILE` / `./bt.toml`), the custom rules, and trading calendars."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import pytest

from btmanager.errors import RulesError
from btmanager.validation.engine import validate_dir
from btmanager.validation.rules import Rules, load_rules
from tests.validation_fixtures import pnl_rows, summary_rows, weekdays, write_csv, write_valid_run


def rules_from(tmp_path: Path, text: str) -> Rules:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    rules = load_rules(path, tmp_path)
    assert rules is not None
    return rules


def rules_error(tmp_path: Path, text: str) -> str:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(RulesError) as caught:
        load_rules(Path("bad.toml"), tmp_path)
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_valid_run(tmp_path / "run")


# --- loading and malformed files -------------------------------------------------------------


def test_no_rules_file_means_none(tmp_path: Path) -> None:
    assert load_rules(None, tmp_path) is None


def test_bt_toml_in_cwd_is_used(tmp_path: Path) -> None:
    (tmp_path / "bt.toml").write_text('[rules."trades.csv"]\nmin_trades = 3\n')
    rules = load_rules(None, tmp_path)
    assert rules is not None
    assert rules.trades.min_trades == 3
    assert rules.source == str((tmp_path / "bt.toml").resolve())


def test_explicit_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"^Rules file not found: nope\.toml$"):
        load_rules(Path("nope.toml"), tmp_path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("calendar = ", "invalid TOML: "),
        (
            "colour = 1\n",
            "unknown key 'colour' (allowed: calendar, files, columns, metrics, rules, min_bytes, checks)",
        ),
        ('[rules."trades.csv"]\nmax_los = 1\n', "unknown rule 'rules.\"trades.csv\".max_los'"),
        (
            '[rules."trades.csv"]\nmin_trades = "10"\n',
            "min_trades must be an integer >= 0, got string '10'",
        ),
        (
            '[rules."trades.csv"]\nmin_trades = true\n',
            "min_trades must be an integer >= 0, got boolean True",
        ),
        ('[rules."trades.csv"]\nmax_loss_per_trade = 10000\n', "must be <= 0 (a loss), got 10000"),
        ('[rules."pnl.csv"]\ncapital = "big"\n', "capital must be a number, got string 'big'"),
        ('[rules."pnl.csv"]\nseverity = "fatal"\n', 'severity must be "warning" or "error"'),
        ('[rules."summary.csv"]\nx = 1\n', 'no rules exist for "summary.csv"'),
        ("calendar = 5\n", "calendar must be a non-empty string, got integer 5"),
        ('calendar = "MOON"\n', "unknown calendar 'MOON'"),
        ('[files]\nrequired = "a.csv"\n', "files.required must be a list of strings"),
        (
            '[files]\nrequired = ["x.csv"]\noptional = ["x.csv"]\n',
            "x.csv is both required and optional",
        ),
        ('[files]\nrequired = ["../x.csv"]\n', "must be a relative path inside the run folder"),
        ('[columns."positions.csv"]\nrequired = ["a"]\n', "positions.csv is not a checked file"),
        ('[columns."trades.csv"]\nmust = ["a"]\n', "unknown key 'columns.\"trades.csv\".must'"),
        ("rules = 3\n", "rules must be a table, got integer 3"),
        ('source = "x"\n', "unknown key 'source'"),
    ],
)
def test_malformed_rules_files(tmp_path: Path, text: str, problem: str) -> None:
    message = rules_error(tmp_path, text)
    assert message.startswith("Rules file bad.toml: ")
    assert problem in message


def test_exchange_calendars_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "exchange_calendars", None)  # makes the import fail
    message = rules_error(tmp_path, 'calendar = "XNYS"\n')
    assert "pip install 'btmanager[calendars]'" in message


def test_to_dict_round_trips_and_is_json(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        'calendar = "XNYS"\n[files]\nrequired = ["positions.csv"]\n'
        '[columns."positions.csv"]\nrequired = ["symbol"]\n[metrics]\noptional = ["sharpe_ratio"]\n'
        '[rules."trades.csv"]\nmax_loss_per_trade = -500\nmin_trades = 2\nseverity = "error"\n'
        '[rules."pnl.csv"]\nmax_drawdown_pct = -20\ncapital = 5000\n',
    )
    data = json.loads(json.dumps(rules.to_dict()))
    assert Rules.from_dict(data) == rules
    assert data["files"]["required"] == ["trades.csv", "summary.csv", "pnl.csv", "positions.csv"]
    assert Rules.from_dict(Rules().to_dict()) == Rules()


def test_from_dict_validates(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="unknown key 'bogus'"):
        Rules.from_dict({"bogus": 1})


# --- the custom rules ------------------------------------------------------------------------


def test_max_loss_and_min_trades_warn(tmp_path: Path, run: Path) -> None:
    rules = rules_from(
        tmp_path, '[rules."trades.csv"]\nmax_loss_per_trade = -400\nmin_trades = 20\n'
    )
    report = validate_dir(run, rules)
    assert report.valid
    assert report.warnings == [
        "trades.csv: 2 trades with pnl below max_loss_per_trade = -400 (lines 3, 5)",
        "trades.csv: 12 trades, fewer than min_trades = 20",
    ]


def test_severity_error_makes_rules_errors(tmp_path: Path, run: Path) -> None:
    rules = rules_from(tmp_path, '[rules."trades.csv"]\nmin_trades = 20\nseverity = "error"\n')
    report = validate_dir(run, rules)
    assert report.errors == ["trades.csv: 12 trades, fewer than min_trades = 20"]
    assert not report.valid


DRAWDOWN = "pnl.csv: drawdown of -10.17% on 2024-01-05 (line 5) is below max_drawdown_pct = -5"


def test_drawdown_with_capital_from_the_rule(tmp_path: Path, run: Path) -> None:
    rules = rules_from(tmp_path, '[rules."pnl.csv"]\nmax_drawdown_pct = -5\ncapital = 10000\n')
    assert validate_dir(run, rules).warnings == [f"{DRAWDOWN} (capital 10000)"]


def test_drawdown_with_capital_from_params_then_summary(tmp_path: Path, run: Path) -> None:
    rules = rules_from(tmp_path, '[rules."pnl.csv"]\nmax_drawdown_pct = -5\nseverity = "error"\n')
    assert validate_dir(run, rules, {"capital": "10000"}).errors == [f"{DRAWDOWN} (capital 10000)"]
    assert validate_dir(run, rules, {"capital": "1000000"}).errors == []
    write_csv(run / "summary.csv", [*summary_rows(), ["capital", "10000"]])
    assert validate_dir(run, rules).errors == [f"{DRAWDOWN} (capital 10000)"]
    report = validate_dir(run, rules, {"capital": "lots"})  # a bad param falls through
    assert report.errors == [f"{DRAWDOWN} (capital 10000)"]


def test_drawdown_without_capital_warns_not_evaluated(tmp_path: Path, run: Path) -> None:
    rules = rules_from(tmp_path, '[rules."pnl.csv"]\nmax_drawdown_pct = -5\nseverity = "error"\n')
    report = validate_dir(run, rules, {"capital": "lots"})
    assert report.valid
    assert report.warnings == [
        "pnl.csv: max_drawdown_pct = -5 not evaluated: capital unknown (the capital param 'lots' "
        'is not a positive number; set capital in [rules."pnl.csv"], pass -p capital=N, '
        "or add a capital metric to summary.csv)"
    ]


def test_extra_required_file_and_columns(tmp_path: Path, run: Path) -> None:
    rules = rules_from(
        tmp_path,
        '[files]\nrequired = ["positions.csv", "report.json"]\noptional = ["pnl.csv", "execution.log"]\n'
        '[columns."positions.csv"]\nrequired = ["symbol", "qty"]\nrecommended = ["side"]\n'
        '[columns."trades.csv"]\noptional = ["strike", "option_type"]\nrequired = ["symbol"]\n',
    )
    (run / "pnl.csv").unlink()
    (run / "execution.log").unlink()
    report = validate_dir(run, rules)
    assert report.errors == [
        "positions.csv: required file is missing",
        "report.json: required file is missing",
    ]
    write_csv(run / "positions.csv", [["symbol", "price"], ["NIFTY", "1"], ["NIFTY", "2", "3"]])
    (run / "report.json").write_text("{bad")
    report = validate_dir(run, rules)
    assert report.errors == [
        "positions.csv: 1 row with the wrong number of fields, expected 2 (line 3 has 3)",
        "positions.csv: missing required column qty",
        "report.json: not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)",
    ]
    assert report.warnings == ["positions.csv: missing recommended column side"]
    assert report.file_checks["positions.csv"]["row_count"] == 2


def test_metrics_levels(tmp_path: Path, run: Path) -> None:
    rules = rules_from(
        tmp_path, '[metrics]\noptional = ["sharpe_ratio"]\nrequired = ["num_trades", "calmar"]\n'
    )
    rows = [r for r in summary_rows() if r[0] != "sharpe_ratio"]
    write_csv(run / "summary.csv", rows)
    report = validate_dir(run, rules)
    assert report.errors == ["summary.csv: missing required metric calmar"]
    assert report.warnings == []


# --- calendars -------------------------------------------------------------------------------

XNYS_HOLIDAYS = [date(2023, 11, 23), date(2023, 12, 25), date(2024, 1, 1), date(2024, 1, 15)]


@pytest.fixture
def xnys_run(run: Path) -> Path:
    days = [d for d in weekdays(date(2023, 11, 1), date(2024, 1, 31)) if d not in XNYS_HOLIDAYS]
    write_csv(run / "pnl.csv", pnl_rows(days))
    return run


def test_xnys_sessions_pass_with_the_exchange_calendar(tmp_path: Path, xnys_run: Path) -> None:
    report = validate_dir(xnys_run, rules_from(tmp_path, 'calendar = "XNYS"\n'))
    assert report.errors == [] and report.warnings == []


def test_weekdays_calendar_warns_exactly_about_the_holidays(xnys_run: Path) -> None:
    report = validate_dir(xnys_run)
    assert report.warnings == [
        "pnl.csv: 4 weekdays without a row (2023-11-23, 2023-12-25, 2024-01-01, 2024-01-15)"
    ]


def test_a_missing_session_is_an_error_naming_the_date(tmp_path: Path, xnys_run: Path) -> None:
    days = [d for d in weekdays(date(2023, 11, 1), date(2024, 1, 31)) if d not in XNYS_HOLIDAYS]
    rows = pnl_rows([d for d in days if d != date(2023, 12, 14)] + [date(2024, 2, 19)])
    write_csv(xnys_run / "pnl.csv", rows)
    report = validate_dir(xnys_run, rules_from(tmp_path, 'calendar = "XNYS"\n'))
    assert report.errors == [
        "pnl.csv: 13 XNYS sessions without a row (2023-12-14, 2024-02-01, 2024-02-02, 2024-02-05, 2024-02-06, ...)"
    ]
    assert report.warnings == ["pnl.csv: rows on 1 day outside the XNYS sessions (2024-02-19)"]


def test_intraday_rows_group_by_session_day(tmp_path: Path, run: Path) -> None:
    rows = [["date", "pnl", "cumulative_pnl"]]
    total = 0.0
    for day in weekdays(date(2023, 12, 18), date(2023, 12, 29)):
        if day == date(2023, 12, 25):
            continue
        for stamp in ("09:30:00-05:00", "16:00:00-05:00"):
            total += 5.0
            rows.append([f"{day}T{stamp}", "5.0", repr(total)])
    write_csv(run / "pnl.csv", rows)
    report = validate_dir(run, rules_from(tmp_path, 'calendar = "XNYS"\n'))
    assert report.file_checks["pnl.csv"]["errors"] == []
    assert report.file_checks["pnl.csv"]["warnings"] == []


def test_the_documented_example_parses(tmp_path: Path) -> None:
    import btmanager.validation.rules

    doc = btmanager.validation.rules.__doc__ or ""
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    rules = rules_from(tmp_path, example)
    assert rules.calendar == "XNYS"
    assert rules.files["positions.csv"] == "required"
    assert rules.files["execution.log"] == "optional"
    assert rules.columns["trades.csv"]["option_type"] == "optional"
    assert rules.pnl.severity == "error" and rules.trades.min_trades == 10
