"""The checks of each kind of file in a run folder."""
