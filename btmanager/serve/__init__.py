"""`bt serve`: the HTTP API and web page over the same Service the CLI uses (extra `serve`).

Nothing here is imported by the other commands: FastAPI and uvicorn cost ~0.4 s to import, so
only `bt serve` loads them (`app`, `routes`, `guard`, `streams`, `server`). `config`, `auth`,
`scripts` and `ratelimit` are plain Python, so the command can check its options first.
"""
