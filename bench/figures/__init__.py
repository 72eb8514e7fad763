"""One module per row group of the table; each exposes `measure() -> list[Row]`."""
