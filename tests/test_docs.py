"""The CLI reference in docs/ is generated from the app; it must not drift."""

from __future__ import annotations

from pathlib import Path

from btmanager.reference import generate

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current() -> None:
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == generate(), (
        "docs/cli.md is stale: run `python -m btmanager.reference > docs/cli.md`"
    )


def test_reference_covers_every_command() -> None:
    text = generate()
    for command in ("run", "status", "logs", "validate", "results", "list", "cancel", "wait",
                    "worker", "health", "serve"):  # fmt: skip
        assert f"## bt {command}\n" in text


def test_readme_links_reference_and_names_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/cli.md" in readme
    assert "./scripts/check" in readme
