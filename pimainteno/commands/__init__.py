"""One module per subcommand: plain functions that do the work; cli.py only wires options."""
