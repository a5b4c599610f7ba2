"""Reading CSV files for the checks: `table.scan_table` over the `stdlib` and `fast` readers."""
