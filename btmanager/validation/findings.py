"""How a message says how often and where: Positions, and the wording every check shares.

A finding keeps its count and only its first few places, so a file with a million bad rows
costs a few integers and gives a message of one line: "3 values ... (lines 4, 9, 12)".
"""

from __future__ import annotations

from collections.abc import Iterable

SHOWN = 5  # positions quoted in a message; the count covers the rest


class Positions:
    """How many times something happened, and the first few places (line numbers)."""

    __slots__ = ("count", "example", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first: list[int] = []
        self.example: str | None = None  # the first offending cell text, when there is one

    def add(self, line: int, example: str | None = None) -> None:
        self.count += 1
        if len(self.first) < SHOWN:
            self.first.append(line)
        if self.example is None and example is not None:
            self.example = example

    def add_indices(self, base: int, indices: Iterable[int], count: int) -> None:
        """Record `count` occurrences at row indices `base + i` (first few of `indices`)."""
        for index in indices:
            if len(self.first) >= SHOWN:
                break
            self.first.append(base + int(index))
        self.count += count

    def shift(self, offset: int) -> None:
        self.first = [p + offset for p in self.first]

    def __bool__(self) -> bool:
        return self.count > 0

    def lines(self) -> str:
        """`(line 4)`, `(lines 4, 9, 12)` or `(lines 4, 9, 12, 15, 20, ...)`."""
        more = ", ..." if self.count > len(self.first) else ""
        word = "line" if self.count == 1 else "lines"
        return f"({word} {', '.join(map(str, self.first))}{more})"

    def eg(self) -> str:
        return f", e.g. {shorten(self.example)!r}" if self.example is not None else ""


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def shorten(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def show_number(value: float) -> str:
    """A rule's threshold or a total as the user would write it: no float noise, no '.0'."""
    return f"{value:.10g}"
