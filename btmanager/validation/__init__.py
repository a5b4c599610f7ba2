"""Validation of a run folder's output files: `bt validate`, and `bt run` once a script exits.

This module deliberately imports nothing: `bt` imports `btmanager.validation.rules` while
parsing `bt run` options, and that must not pull in the CSV readers and checks.
"""
