"""Validation of a run folder's output files: `bt validate`, and `bt run` once a script exits.

- engine: `validate_dir`, which checks each file the rules name, then the totals across files.
- report: the Report it returns (the JSON `bt` prints and stores) and each file's FileCheck.
- checks/: one module per kind of file, each with its messages (trades.csv, summary.csv,
  pnl.csv, metadata.json, execution.log, files a rules file adds), the totals across files,
  and what every CSV or JSON file must be.
- readers/: CSV reading behind one interface (readers.table): the stdlib csv reader, whose
  findings are the truth, and a fast pyarrow (else pandas) scan that only confirms big files
  are clean, so both give identical messages.
- findings: Positions (a count and the first few lines) and the wording messages share.
- rules, calendars: what a rules file may ask for, and trading calendars for pnl.csv's dates.

This module deliberately imports nothing: `bt` imports `btmanager.validation.rules` while
parsing `bt run` options, and that must not pull in the readers and checks.
"""
