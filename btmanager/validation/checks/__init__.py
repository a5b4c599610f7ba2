"""The checks of a run folder's files: one module per kind of file, with its messages."""
