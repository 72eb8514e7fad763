"""Helpers for cog: render `--help` of every command into docs/commands.md."""

from click.testing import CliRunner

from pimainteno.cli import cli


def reference() -> str:
    out = []
    runner = CliRunner()
    for args in [[], *([name] for name in sorted(cli.commands))]:
        result = runner.invoke(cli, [*args, "--help"], prog_name="pimainteno", terminal_width=100)
        title = "pimainteno " + " ".join(args) if args else "pimainteno"
        out.append(f"\n### {title}\n\n```\n{result.output.rstrip()}\n```\n")
    return "".join(out) + "\n"


def config_table(name: str) -> str:
    """docs/configuration.md's table of one configuration table, from the schema."""
    from pimainteno.config.docs import table

    return table(name)


# The values the annotated example (PiMainteno.toml at the top of the repository) sets; every other
# key is shown commented out at its default.
EXAMPLE_VALUES = {
    "llm": {"provider": "codex"},
    "database": {},
    "scheduler": {"enabled": True, "schedule": "0 3 * * *", "projects": ["~/src/app"]},
    "systemd_monitor": {"enabled": False, "units": ["app.service"]},
    "web": {"host": "127.0.0.1", "port": 8001},
}


def example_file() -> str:
    from pimainteno.config.docs import example_file

    return example_file(EXAMPLE_VALUES)
