"""The edge's HTTP client for the cloud: real timeouts on every call, failures as `UnavailableError`.

Sedna's joint-inference client waits forever on a slow cloud; this one gives up after ``timeout_s`` so the
caller can answer from the edge instead. Over HTTPS it verifies the cloud's certificate: against ``ca`` (the
cloud's self-signed certificate or its CA) when given, else the system CAs; there is no way to skip it.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from skyline.errors import AuthError, UnavailableError
from skyline.security.tls import client_ssl_context

FloatArray = npt.NDArray[np.float32]


class CloudClient:
    """OIP v2 inference, split tails and telemetry against the cloud app (`skyline.edge.cloud_app`)."""

    def __init__(
        self, base_url: str, *, token: str | None = None, timeout_s: float = 1.0, ca: Path | None = None
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout_s, headers=headers, verify=verifying_context(ca)
        )

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.post(path, **kwargs)
        except httpx.TimeoutException as exc:
            raise UnavailableError(f"cloud {self.base_url} did not answer within {self.timeout_s} s") from exc
        except httpx.HTTPError as exc:
            raise UnavailableError(f"cloud {self.base_url} is unreachable: {type(exc).__name__}") from exc
        if response.status_code in (401, 403):
            raise AuthError(f"cloud refused the edge's token ({response.status_code}): {response.text[:200]}")
        if response.status_code >= 400:
            raise UnavailableError(f"cloud answered {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as exc:
            raise UnavailableError(
                f"cloud {self.base_url} answered with no JSON: {response.text[:200]}"
            ) from exc

    def infer(self, model: str, x: FloatArray) -> FloatArray:
        """Class probabilities from the cloud model for a batch ``x`` (N, *input_shape)."""
        body = {
            "inputs": [
                {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
        answer = self._post(f"/v2/models/{model}/infer", json=body)
        try:
            output = answer["outputs"][0]
            return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._malformed("inference", answer) from exc

    def split_tail(self, model: str, partition: int, payload: bytes, headers: dict[str, str]) -> FloatArray:
        """Send an activation (raw bytes + x-shape/x-dtype headers); the cloud runs layers ``partition`` on."""
        return self.split_tail_timed(model, partition, payload, headers)[0]

    def split_tail_timed(
        self, model: str, partition: int, payload: bytes, headers: dict[str, str]
    ) -> tuple[FloatArray, float]:
        """`split_tail`, plus the milliseconds the cloud says it spent running the tail."""
        answer = self._post(f"/v1/split/{model}/{partition}", content=payload, headers=headers)
        try:
            probs = np.asarray(answer["probs"], dtype=np.float32).reshape(answer["shape"])
            return probs, float(answer["cloud_ms"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._malformed("split tail", answer) from exc

    def _malformed(self, what: str, answer: Any) -> UnavailableError:
        """A cloud that answers 2xx with the wrong body is as useless as an absent one: the edge falls back."""
        return UnavailableError(f"cloud {self.base_url} sent a malformed {what} answer: {str(answer)[:200]}")

    def echo(self, size_bytes: int) -> None:
        """Send ``size_bytes`` zero bytes to the cloud's echo route (a network probe)."""
        self._post(
            "/v1/echo", content=b"\0" * size_bytes, headers={"content-type": "application/octet-stream"}
        )

    def telemetry(self, agent: str, metrics: dict[str, float | int | str | None]) -> None:
        self._post("/v1/telemetry", json={"agent": agent, "metrics": metrics})


def verifying_context(ca: Path | None) -> ssl.SSLContext:
    """The TLS context every edge client of the cloud uses: ``ca`` trusted, else the system CAs."""
    return client_ssl_context(ca)


def measure_network(
    client: CloudClient, *, probe_bytes: int = 256 * 1024, repeats: int = 3
) -> tuple[float, float]:
    """Measure (bandwidth Mbit/s, RTT ms) to the cloud: a tiny echo gives the RTT, a big one the bandwidth."""

    def timed(size: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            client.echo(size)
            best = min(best, time.perf_counter() - started)
        return best

    rtt_s = timed(1)
    big_s = timed(probe_bytes)
    bandwidth_mbps = probe_bytes * 8 / max(big_s - rtt_s, 1e-6) / 1e6
    return bandwidth_mbps, rtt_s * 1e3
