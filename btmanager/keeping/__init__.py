"""Keeping runs: rerunning them, tags and notes, removing them (`rm`, `gc`), and rebuilding a
lost registry from the run folders. Core functions return plain data and never print."""
