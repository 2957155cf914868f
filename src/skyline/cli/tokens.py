"""`skyline token ...`: the first admin token (printed once), then create, list and revoke tokens.

Whoever can write the token file is an administrator: keep it on the control-plane host, mode 0600.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from skyline.cli.output import write_json
from skyline.errors import ConfigError

token_app = typer.Typer(
    help="Bearer tokens and their roles (admin, operator, viewer, agent, invoker, edge).",
    no_args_is_help=True,
)

_TOKENS = typer.Option(
    Path(".skyline/tokens.json"), "--tokens", envvar="SKYLINE_TOKENS", help="Token file (hashes only, 0600)."
)
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """'3600', '90s', '30m', '12h' or '7d' → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"--ttl {text!r} is not a positive duration; use e.g. 3600, 30m, 12h or 7d")
    return float(match.group(1)) * _UNITS_S[match.group(2) or "s"]


@token_app.command("bootstrap")
def bootstrap(tokens: Path = _TOKENS) -> None:
    """Create the first admin token and print it ONCE; does nothing if an admin token was ever issued."""
    from skyline.security.tokens import TokenAuthority

    token = TokenAuthority(tokens).bootstrap_admin()
    if token is None:
        raise ConfigError(
            f"{tokens} already has its admin; ask that admin for a token ('skyline token create')"
        )
    typer.echo(f"admin token (shown once, store it now): {token}")


@token_app.command("create")
def create(
    role: str = typer.Option(..., help="admin, operator, viewer, agent, invoker or edge."),
    subject: str = typer.Option(..., help="Who the token is for (a user, node or device name)."),
    ttl: str | None = typer.Option(None, help="Lifetime: 3600, 30m, 12h, 7d (default: no expiry)."),
    model: list[str] = typer.Option([], help="Limit to this model (repeat); default: all models."),
    tokens: Path = _TOKENS,
) -> None:
    """Issue a token and print it once (only its hash is stored)."""
    from skyline.security.tokens import TokenAuthority

    token = TokenAuthority(tokens).issue(
        subject, role, ttl_s=None if ttl is None else parse_ttl(ttl), models=model
    )
    typer.echo(token)


@token_app.command("list")
def list_tokens(
    tokens: Path = _TOKENS,
    json_path: Path | None = typer.Option(None, "--json", help="Write the records here."),
) -> None:
    """Every token's id, subject, role, expiry and revocation (never the token or its hash)."""
    from skyline.security.tokens import TokenAuthority

    records = [r.public() for r in TokenAuthority(tokens).records()]
    if json_path:
        write_json(json_path, {"tokens": records})
        return
    for r in records:
        state = "revoked" if r["revoked_at"] else "active"
        scope = ",".join(r["models"]) or "all models"
        typer.echo(f"{r['token_id']}  {r['role']:<8} {r['subject']:<16} {state:<8} {scope}")


@token_app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="The id ('skyline token list')."), tokens: Path = _TOKENS
) -> None:
    """Revoke a token: servers refuse it from their next request on."""
    from skyline.security.tokens import TokenAuthority

    TokenAuthority(tokens).revoke(token_id)
    typer.echo(f"revoked {token_id}")
