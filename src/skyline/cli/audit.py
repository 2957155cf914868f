"""`skyline audit verify PATH`: exit 0 when the hash chain is intact, 2 with the first broken line."""

from __future__ import annotations

from pathlib import Path

import typer

from skyline.cli.output import write_json

audit_app = typer.Typer(help="The hash-chained audit log of state-changing calls.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    path: Path = typer.Argument(..., help="Audit log (JSON lines)."),
    key: Path | None = typer.Option(None, help="HMAC key file when the log is keyed (mode 0600)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write a summary here."),
) -> None:
    """Recompute the chain: detects any edited, inserted or deleted record."""
    from skyline.security.audit import verify_audit_log
    from skyline.security.keyfile import read_private

    report = verify_audit_log(path, key=None if key is None else read_private(key).strip())
    summary = {"valid": True, "records": report.records, "last_hash": report.last_hash}
    if json_path:
        write_json(json_path, summary)
    else:
        typer.echo(f"valid: {report.records} records, last hash {report.last_hash[:16]}…")
