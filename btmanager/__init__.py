"""btmanager: the `bt` run manager for backtest scripts."""

__version__ = "0.1.0"
