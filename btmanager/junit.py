"""JUnit XML for a validation report, so CI systems can show it like test results.

One <testcase> per file check: its errors are a <failure>, its warnings go to <system-out>
(and a `warnings` property), a file that is absent and not required is <skipped>.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from btmanager.validation.report import Report


def write_junit(report: Report, path: Path, suite_name: str, force: bool = False) -> None:
    """Write the report as JUnit XML, atomically (a reader never sees half a file).

    Only to a new file, or an existing regular one with `force`: never through a symlink or
    onto a device, FIFO or directory (UsageError); write failures are StorageError.
    """
    from btmanager.safe_files import write_atomic

    data = ET.tostring(_suites(report, suite_name), encoding="utf-8", xml_declaration=True)
    write_atomic(
        path,
        lambda handle: handle.write(data + b"\n"),
        force=force,
        option="--junit",
        what="JUnit report",
    )


def _suites(report: Report, suite_name: str) -> ET.Element:
    checks = report.file_checks
    failures = sum(1 for c in checks.values() if c.get("errors"))
    skipped = sum(1 for c in checks.values() if _skipped(c))
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": "0"}
    suites = ET.Element("testsuites", {"name": suite_name, **counts})
    suite = ET.SubElement(
        suites, "testsuite", {"name": suite_name, **counts, "skipped": str(skipped)}
    )
    for name, check in checks.items():
        suite.append(_testcase(suite_name, name, check))
    return suites


def _skipped(check: dict[str, Any]) -> bool:
    return not check.get("exists") and not check.get("errors") and not check.get("warnings")


def _testcase(suite_name: str, name: str, check: dict[str, Any]) -> ET.Element:
    case = ET.Element("testcase", {"classname": suite_name, "name": name, "time": "0"})
    errors: list[str] = list(check.get("errors") or [])
    warnings: list[str] = list(check.get("warnings") or [])
    if warnings:
        properties = ET.SubElement(case, "properties")
        ET.SubElement(properties, "property", {"name": "warnings", "value": str(len(warnings))})
    if errors:
        failure = ET.SubElement(case, "failure", {"message": errors[0], "type": "validation"})
        failure.text = "\n".join(errors)
    elif _skipped(check):
        ET.SubElement(case, "skipped", {"message": f"{name} is not present"})
    if warnings:
        ET.SubElement(case, "system-out").text = "\n".join(f"warning: {w}" for w in warnings)
    return case
