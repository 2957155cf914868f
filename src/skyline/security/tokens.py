"""Bearer tokens: opaque random strings, stored only as sha256 hashes in an owner-only (0600) JSON file.

Why opaque and not JWT: revocation and expiry are checked against one file anyway, a token reveals
nothing about its holder, and there is no algorithm to confuse (no ``alg: none``, no HS/RS mix-ups).

A token reads ``sky_<id>_<secret>``: ``id`` (12 hex digits) names the record, ``secret`` is 32 random
bytes (url-safe base64). The file keeps ``sha256(token)``, never the token, so a stolen file lets nobody
in. Comparison is constant-time. There is no default password: `TokenAuthority.bootstrap_admin` returns
the first admin token exactly once (the caller prints it once), and ``None`` ever after.

Several processes may share one file (the CLI issues, a server verifies): writes hold an exclusive
``fcntl`` lock and replace the file atomically; readers reload when the file (inode, mtime or size) changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skyline.errors import AuthError, ConfigError, DataError, NotFoundError
from skyline.security.keyfile import check_private, write_private
from skyline.security.rbac import Principal, Role

__all__ = ["TOKEN_PREFIX", "TokenAuthority", "TokenRecord"]

TOKEN_PREFIX = "sky"
_ID_HEX = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    """What the file keeps about one token (its hash, never the token itself)."""

    token_id: str
    subject: str
    role: str
    sha256: str
    created_at: float  # unix seconds
    expires_at: float | None = None
    revoked_at: float | None = None
    models: tuple[str, ...] = field(default_factory=tuple)

    def public(self) -> dict[str, Any]:
        """The record without its hash: safe to print and list."""
        data = asdict(self)
        data.pop("sha256")
        data["models"] = list(self.models)
        return data


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _parse(token: str) -> str:
    """The token id inside ``token``; AuthError (without echoing the token) when malformed."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != _ID_HEX or not parts[2]:
        raise AuthError(
            "malformed bearer token; expected 'sky_<id>_<secret>' as issued by 'skyline token create'"
        )
    return parts[1]


class TokenAuthority:
    """Issues, verifies, lists and revokes tokens kept (hashed) in one JSON file at ``path``."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._records: dict[str, TokenRecord] = {}
        self._bootstrapped = False

    # ------------------------------------------------------------------ file
    def _load_if_changed(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._records, self._bootstrapped = None, {}, False
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every write is a new file (atomic rename)
        if stamp == self._stamp:
            return
        check_private(self.path)
        try:
            raw = json.loads(self.path.read_text())
            records = {
                r["token_id"]: TokenRecord(**{**r, "models": tuple(r.get("models", ()))})
                for r in raw["tokens"]
            }
            bootstrapped = bool(raw.get("bootstrapped", False))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"token file {self.path} is unreadable or malformed ({exc}); restore it from backup"
            ) from exc
        self._stamp, self._records, self._bootstrapped = stamp, records, bootstrapped

    def _save(self) -> None:
        payload = {
            "format": "skyline-tokens/1",
            "bootstrapped": self._bootstrapped,
            "tokens": [{**asdict(r), "models": list(r.models)} for r in self._records.values()],
        }
        write_private(self.path, (json.dumps(payload, indent=1) + "\n").encode())
        st = self.path.stat()
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Exclusive across threads and processes: lock, reload the latest file, mutate, save."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with self._lock, open(lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                self._stamp = None
                self._load_if_changed()
                yield
                self._save()
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ API
    def issue(
        self, subject: str, role: Role | str, *, ttl_s: float | None = None, models: Iterable[str] = ()
    ) -> str:
        """Create a token for ``subject`` with ``role``; return it (the only time it exists in clear)."""
        try:
            role = Role(role)
        except ValueError:
            raise ConfigError(
                f"unknown role {role!r}; roles are {', '.join(r.value for r in Role)}"
            ) from None
        if not subject or not subject.strip():
            raise ConfigError("a token needs a non-empty subject; pass e.g. --subject alice")
        if ttl_s is not None and not ttl_s > 0:
            raise ConfigError(
                f"ttl_s must be positive seconds, got {ttl_s}; omit it for a token that never expires"
            )
        with self._writing():
            token_id = secrets.token_hex(_ID_HEX // 2)
            while token_id in self._records:
                token_id = secrets.token_hex(_ID_HEX // 2)
            token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
            now = self._clock()
            self._records[token_id] = TokenRecord(
                token_id=token_id,
                subject=subject,
                role=role.value,
                sha256=_hash(token),
                created_at=now,
                expires_at=None if ttl_s is None else now + ttl_s,
                models=tuple(sorted(set(models))),
            )
            if role is Role.ADMIN:
                self._bootstrapped = True
        return token

    def verify(self, token: str) -> Principal:
        """The principal a token stands for; `AuthError` when malformed, unknown, revoked or expired."""
        token_id = _parse(token)
        with self._lock:
            self._load_if_changed()
            record = self._records.get(token_id)
        if record is None or not hmac.compare_digest(record.sha256, _hash(token)):
            raise AuthError("unknown bearer token; ask an admin for one ('skyline token create')")
        if record.revoked_at is not None:
            raise AuthError(f"token {token_id} was revoked; ask an admin for a new one")
        if record.expires_at is not None and self._clock() >= record.expires_at:
            raise AuthError(f"token {token_id} expired; ask an admin for a new one")
        return Principal(
            subject=record.subject, role=Role(record.role), token_id=token_id, models=frozenset(record.models)
        )

    def revoke(self, token_id: str) -> None:
        """Revoke a token by id (idempotent); `NotFoundError` for an unknown id."""
        with self._writing():
            record = self._records.get(token_id)
            if record is None:
                raise NotFoundError(f"no token with id {token_id!r}; 'skyline token list' shows the ids")
            if record.revoked_at is None:
                self._records[token_id] = TokenRecord(**{**asdict(record), "revoked_at": self._clock()})

    def records(self) -> list[TokenRecord]:
        """Every token record, oldest first (hashes included: print `TokenRecord.public` instead)."""
        with self._lock:
            self._load_if_changed()
            return sorted(self._records.values(), key=lambda r: (r.created_at, r.token_id))

    def bootstrap_admin(self, subject: str = "admin") -> str | None:
        """The first admin token, once: returned if no admin token was ever issued from this file, else None.

        There is no default password: a fresh deployment calls this, prints the token once, and the
        operator stores it. Revoking every admin does not re-open the bootstrap (edit nothing by hand:
        create a new file to start over).
        """
        with self._writing():
            if self._bootstrapped:
                return None
            self._bootstrapped = True
        return self.issue(subject, Role.ADMIN)
