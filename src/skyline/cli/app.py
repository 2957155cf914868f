"""The `skyline` app: registers one sub-command group per capability and turns user errors into one line.

Sub-command modules import only typer and the standard library at import time; heavy frameworks are
imported inside the command functions so that `skyline --help` and `skyline sim ...` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import typer
import typer.main

from skyline import __version__
from skyline.cli.audit import audit_app
from skyline.cli.cluster import agent_app, cluster_app, job_app, node_app
from skyline.cli.compress import compress_app
from skyline.cli.demo import demo
from skyline.cli.edge import edge_app
from skyline.cli.example import example_app
from skyline.cli.fl import fl_app
from skyline.cli.forecast import forecast_app
from skyline.cli.keys import keys_app
from skyline.cli.llm import bench_llm, llm_app
from skyline.cli.serve import bench_app, serve_app
from skyline.cli.service import service_app
from skyline.cli.sim import sim_app
from skyline.cli.tokens import token_app
from skyline.cli.train import train
from skyline.errors import SkylineError

app = typer.Typer(
    name="skyline",
    help="Run AI workloads across the datacenter, the cloud and the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(example_app, name="example")
app.add_typer(keys_app, name="keys")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(sim_app, name="sim")
app.add_typer(forecast_app, name="forecast")
app.add_typer(compress_app, name="compress")
app.add_typer(cluster_app, name="cluster")
app.add_typer(agent_app, name="agent")
app.add_typer(job_app, name="job")
app.add_typer(node_app, name="node")
app.add_typer(serve_app, name="serve")
app.add_typer(service_app, name="service")
app.add_typer(bench_app, name="bench")
app.add_typer(edge_app, name="edge")
app.add_typer(fl_app, name="fl")
app.add_typer(llm_app, name="llm")
bench_app.command("llm")(bench_llm)
app.command("demo")(demo)
app.command("train")(train)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"skyline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run AI workloads across the datacenter, the cloud and the edge."""


def _fail(message: str, code: int = 2) -> None:
    # One line on stderr, never a traceback: the message already says what to fix.
    first_line = " ".join(message.split())
    sys.stderr.write(f"error: {first_line}\n")
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``skyline`` console script."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="skyline", standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(exc.format_message() + hint)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except SkylineError as exc:
        _fail(str(exc))
    raise SystemExit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
