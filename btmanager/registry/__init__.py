"""The run registry: the SQLite file (`db`), what a row holds (`model`), its schema history
(`migrations`)."""
