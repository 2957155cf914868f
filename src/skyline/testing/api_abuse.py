"""Abuse a live `ApiTarget` the way attackers and broken clients do: malformed, deeply nested and oversized
bodies, malformed HTTP itself (request lines, headers, framing meant to smuggle a second request), and a
token that spends more than its rate limit. A server must refuse each with a 4xx (or close the
connection), never answer 5xx, and keep serving afterwards.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from skyline.testing.api_matrix import openapi, operations
from skyline.testing.api_target import ApiTarget

__all__ = [
    "AbuseResult",
    "abusive_bodies",
    "body_operations",
    "check_rate_limit",
    "oversized_body",
    "send_abuse",
    "send_raw_abuse",
]

UNDOCUMENTED_LIMIT_BYTES = 16 * 1024 * 1024  # what "oversized" means for a server that documents no cap
JSON, FORM = "application/json", "application/x-www-form-urlencoded"


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def body_operations(target: ApiTarget) -> list[tuple[str, str, str]]:
    """(METHOD, path, media type) of the operations whose document declares a JSON or form body."""
    found = []
    for path, ops in openapi(target).get("paths", {}).items():
        for method, op in ops.items():
            declared = op.get("requestBody", {}).get("content", {})
            found += [(method.upper(), path, media) for media in (JSON, FORM) if media in declared]
    return sorted(found)


def abusive_bodies(media: str) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(label, body, headers) of requests a server must refuse with 4xx — never accept, never 5xx."""
    if media == FORM:
        form = {"content-type": FORM}
        yield "form of binary garbage", bytes(range(256)) * 4, form
        yield "form with 1,000 fields", "&".join(f"f{i}=1" for i in range(1000)).encode(), form
        return
    json_type = {"content-type": JSON}
    yield "not json", b"{not json", json_type
    yield "binary garbage", bytes(range(256)) * 4, json_type
    yield "json array instead of object", b"[1, 2, 3]", json_type
    yield "deeply nested json", _nested(50_000), json_type
    yield "wrong content type", b"a=1&b=2", {"content-type": FORM}


def oversized_body(target: ApiTarget) -> bytes:
    """A syntactically valid JSON body one byte over the server's cap (or 16 MiB when it has none)."""
    limit = target.body_limit_bytes or UNDOCUMENTED_LIMIT_BYTES
    return b"{" + b" " * (limit - 1) + b"}"


@dataclass(frozen=True, slots=True)
class AbuseResult:
    method: str
    path: str
    label: str
    status: int  # 0: the server closed the connection without an answer

    @property
    def refused(self) -> bool:
        return 400 <= self.status < 500 or self.status == 0


def send_abuse(target: ApiTarget, *, oversized_ops: int | None = None) -> list[AbuseResult]:
    """Every abusive body to every operation with a body, and an oversized body to every POST/PUT/PATCH
    operation (or the first ``oversized_ops`` of them), all with the most privileged credentials so that
    only the body is at fault."""
    credentials = target.credentials(target.tokens[target.fuzz_token])
    results = []
    with httpx.Client(timeout=120) as client:
        for method, path, media in body_operations(target):
            url = target.url + path.format_map(dict(target.path_values))
            for label, body, headers in abusive_bodies(media):
                response = client.request(method, url, content=body, headers={**credentials, **headers})
                results.append(AbuseResult(method, path, label, response.status_code))
        big = oversized_body(target)
        writes = [(m, p) for m, p in operations(target) if m in {"POST", "PUT", "PATCH"}]
        for method, path in writes[:oversized_ops]:
            url = target.url + path.format_map(dict(target.path_values))
            headers = {**credentials, "content-type": JSON}
            response = client.request(method, url, content=big, headers=headers)
            results.append(AbuseResult(method, path, f"oversized ({len(big)} bytes)", response.status_code))
    return results


def _raw_requests(prefix: str) -> Iterator[tuple[str, bytes]]:
    """(label, bytes) of malformed HTTP/1.1 requests; ``prefix`` is the target's path (the gateway's
    service prefix)."""
    head = f"POST {prefix}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    yield "not http", b"NOT HTTP AT ALL\r\n\r\n"
    yield "request line of 70 KiB", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    yield (
        "header of 70 KiB",
        f"GET {prefix}/ HTTP/1.1\r\nHost: x\r\nX-Big: ".encode() + b"a" * 70_000 + b"\r\n\r\n",
    )
    yield "negative content-length", head + b"Content-Length: -5\r\n\r\n"
    yield "non-numeric content-length", head + b"Content-Length: 12abc\r\n\r\nabc"
    yield "two different content-lengths", head + b"Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"
    yield (
        "content-length with chunked",
        head + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    yield "bad chunk size", head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    yield "header without a colon", f"GET {prefix}/ HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".encode()


def _status_of(address: tuple[str, int], payload: bytes, timeout_s: float) -> int:
    """The status a server answers to ``payload`` on a fresh connection; 0 when it closes without one."""
    with socket.create_connection(address, timeout=timeout_s) as raw:
        try:
            raw.sendall(payload)
            line = raw.makefile("rb").readline(1024)
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            return 0
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else 0


def send_raw_abuse(target: ApiTarget, *, timeout_s: float = 5.0) -> tuple[list[AbuseResult], bool]:
    """Malformed HTTP on raw sockets (plain HTTP targets only), then whether the server still answers a
    well-formed request. A server that waits out ``timeout_s`` for bytes that never come counts as 0."""
    parts = urlsplit(target.url)
    assert parts.scheme == "http" and parts.hostname is not None and parts.port is not None
    address = (parts.hostname, parts.port)
    results = [
        AbuseResult("RAW", parts.path or "/", label, _status_of(address, payload, timeout_s))
        for label, payload in _raw_requests(parts.path.rstrip("/"))
    ]
    method, path = next(op for op in operations(target) if op[0] == "GET")
    url = target.url + path.format_map(dict(target.path_values))
    credentials = target.credentials(target.tokens[target.fuzz_token])
    alive = httpx.request(method, url, headers=credentials, timeout=30).status_code < 500
    return results, alive


def check_rate_limit(target: ApiTarget) -> dict[str, Any]:
    """Spend one token's budget on the target's rate-limited operation, as fast as one client can: the
    answer must turn 429 with Retry-After before the token sent more than its burst plus what its rate
    refilled meanwhile. ``ok`` says whether it did; the rest says what was seen."""
    limit = target.rate_limit
    assert limit is not None, f"{target.name} declares no rate limit"
    method, path = limit.operation.split(" ", 1)
    url = (limit.url or target.url) + path.format_map(dict(target.path_values))
    headers = target.credentials(target.tokens[limit.caller])
    started, sent = time.monotonic(), 0
    with httpx.Client(timeout=30) as client:
        while sent <= limit.burst + limit.rate_per_s * (time.monotonic() - started) + 1:
            response = client.request(method, url, headers=headers)
            sent += 1
            if response.status_code == 429:
                retry_after = response.headers.get("retry-after", "")
                return {
                    "ok": retry_after.isdigit() and int(retry_after) >= 1,
                    "sent_until_429": sent,
                    "burst": limit.burst,
                    "retry_after": retry_after,
                }
            if response.status_code >= 400:
                return {"ok": False, "sent_until_429": None, "refused_with": response.status_code}
    return {"ok": False, "sent_until_429": None, "sent": sent, "burst": limit.burst}
