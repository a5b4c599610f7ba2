"""Reading CSV files for the checks: the stdlib reader, and a fast scan for big files."""
