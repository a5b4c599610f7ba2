"""Parameter sweeps: many runs of one script from one `bt sweep` command.

`spec` parses value specs (`a,b,c`, `START:STOP:STEP`) and grid files, `grid` expands them into
combinations (all of them, or a reproducible random sample), `submit` turns the combinations
into queued runs in one registry transaction, and `progress` follows a sweep to its end.
"""
