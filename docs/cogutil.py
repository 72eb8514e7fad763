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
