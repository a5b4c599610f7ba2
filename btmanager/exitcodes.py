"""Named exit codes of the `bt` command, in one place.

| code | meaning                                                            |
|------|--------------------------------------------------------------------|
| 0    | success: the run completed, the folder is valid, the command worked |
| 1    | the run failed, validation found errors, or the request was refused |
| 2    | usage or input error (bad option, unknown run, missing file, ...)   |
| 124  | `bt wait --timeout` passed before the runs finished                 |
| 130  | the run was cancelled (Ctrl-C, SIGTERM, `bt cancel`)                |
"""

OK = 0
FAILED = 1
USAGE = 2
WAIT_TIMEOUT = 124
CANCELLED = 130
