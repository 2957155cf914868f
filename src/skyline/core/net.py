"""TCP ports: one free right now, whether one can be bound, and a rendezvous port chosen from a range.

Stdlib only and in the lowest layer, so that training, serving, the control plane and the test helpers
share one copy.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass

from skyline.errors import ConfigError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listened on a moment ago (the kernel's pick from port 0).

    Only a hint for another process: it can be taken before that process binds it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_is_bindable(port: int, host: str = "") -> bool:
    """Whether a listening socket could bind ``host:port`` now (``""``: every interface, as torch's
    rendezvous store binds it). SO_REUSEADDR as servers set it, so a port left in TIME_WAIT counts free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRange:
    """Ports ``first``..``last`` (inclusive) that rendezvous may use, e.g. one opened in the firewall."""

    first: int = 29500
    last: int = 29999

    def __post_init__(self) -> None:
        if not 1024 <= self.first <= self.last <= 65535:
            raise ConfigError(
                f"a port range needs 1024 <= first <= last <= 65535, got {self.first}-{self.last}; "
                "e.g. 29500-29999"
            )

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """``"29500-29999"`` (or one port, ``"29500"``)."""
        found = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", text.strip())
        if found is None:
            raise ConfigError(f"a port range is FIRST-LAST, e.g. 29500-29999; got {text!r}")
        first, last = found.groups()
        return cls(first=int(first), last=int(last or first))

    def __len__(self) -> int:
        return self.last - self.first + 1

    def pick(self, key: str, attempt: int) -> int:
        """The port for ``key``'s ``attempt``: the same on every host and after a restart, spread over
        the range by a hash of ``key``, and a different one for each next attempt (a retry after a
        collision does not collide again on the same port)."""
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return self.first + (int.from_bytes(digest, "big") + attempt) % len(self)
