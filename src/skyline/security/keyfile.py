"""Secret files with owner-only permissions: written 0600 atomically, refused when others can read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from skyline.errors import ConfigError

__all__ = ["check_private", "read_private", "write_private"]


def write_private(path: Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` with mode 0600, atomically (a temporary file in the same folder, renamed).

    ``durable`` flushes it to disk before the rename (keys); without it, a crash may lose the new content
    but never leaves a half-written file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask cannot widen it, an old tmp file cannot keep wider bits
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write secret file {path}: {exc.strerror}; pass a writable path") from exc
    return path


def check_private(path: Path) -> None:
    """Refuse a secret file that group or others may read or write (like ssh does for private keys)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"secret file {path} does not exist; create it first (skyline keys gen)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secret file {path} has permissions {stat.filemode(mode)}, readable by others; "
            f"run 'chmod 600 {path}'"
        )


def read_private(path: Path) -> bytes:
    """Read a secret file after checking that only its owner can access it."""
    path = Path(path)
    check_private(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from exc
