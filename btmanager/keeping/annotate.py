"""Tags and notes on runs (`bt tag`, `bt note`): registry rows, mirrored in each run.json."""

from __future__ import annotations

import re
from collections.abc import Sequence

from btmanager.errors import UsageError
from btmanager.registry.db import Registry
from btmanager.registry.model import Run

KEEP_TAG = "keep"  # `bt gc` never removes a run tagged so
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+@/-]{0,63}")
MAX_NOTE = 64 * 1024


def check_tags(tags: Sequence[str]) -> list[str]:
    """Tags as given, each once; a tag is a word (letters, digits, `_.:+@/-`, at most 64)."""
    for tag in tags:
        if not TAG_PATTERN.fullmatch(tag):
            raise UsageError(
                f"Invalid tag {tag!r}: tags are 1-64 letters, digits or _.:+@/- and do not "
                "start with a punctuation mark"
            )
    return list(dict.fromkeys(tags))


def change_tags(registry: Registry, run: Run, tags: Sequence[str], remove: bool) -> Run:
    wanted = check_tags(tags)
    if not wanted:
        raise UsageError("Name at least one tag")
    if remove:
        registry.change_tags(run.run_id, (), wanted)
    else:
        registry.change_tags(run.run_id, wanted, ())
    return _mirrored(registry, run.run_id)


def set_note(registry: Registry, run: Run, text: str, append: bool) -> Run:
    if "\x00" in text:
        raise UsageError("A note must not hold a NUL byte")
    if len(text) > MAX_NOTE:
        raise UsageError(f"A note holds at most {MAX_NOTE} characters")
    registry.set_note(run.run_id, text if text or append else None, append)
    return _mirrored(registry, run.run_id)


def _mirrored(registry: Registry, run_id: str) -> Run:
    """The run as it is now, its run.json rewritten: the folder alone tells the whole story
    (and `bt registry rebuild` gets tags and notes back from it)."""
    from btmanager.lifecycle.runfile import write_run_file

    run = registry.get(run_id)
    write_run_file(run)
    return run
