"""One module per group of `bt` commands; each command parses, calls the service, renders."""
