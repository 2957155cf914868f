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

from skyline.edge.local_model import as_probabilities
from skyline.errors import AuthError, UnavailableError
from skyline.security.tls import client_ssl_context

FloatArray = npt.NDArray[np.float32]


class CloudClient:
    """OIP v2 inference, split tails, fleet telemetry and desired versions against the edge cloud
    (`skyline.edge.cloud_app`)."""

    def __init__(
        self, base_url: str, *, token: str | None = None, timeout_s: float = 1.0, ca: Path | None = None
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout_s, headers=headers, verify=verifying_context(ca)
        )
        self._models: dict[str, tuple[str, int]] = {}  # model → (its input's name, most rows per request)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, **kwargs: Any) -> Any:
        return self._call("POST", path, **kwargs)

    def _get(self, path: str) -> Any:
        return self._call("GET", path)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
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
        """Class probabilities from the cloud model's first output for a batch ``x`` (N, *input_shape), sent
        in requests of at most the model's ``max_batch_size`` rows (its OIP metadata says how many)."""
        name, most = self._metadata(model)
        return np.concatenate([self._infer(model, name, x[i : i + most]) for i in range(0, len(x), most)])

    def _infer(self, model: str, name: str, x: FloatArray) -> FloatArray:
        body = {
            "inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        answer = self._post(f"/v2/models/{model}/infer", json=body)
        try:
            output = answer["outputs"][0]
            scores = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
            return as_probabilities(scores)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._malformed("inference", answer) from exc

    def _metadata(self, model: str) -> tuple[str, int]:
        if model not in self._models:
            metadata = self._get(f"/v2/models/{model}")
            try:
                name = str(metadata["inputs"][0]["name"])
                most = int(metadata.get("parameters", {}).get("batching", {}).get("max_batch_size", 32))
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise self._malformed("model metadata", metadata) from exc
            self._models[model] = (name, max(1, most))
        return self._models[model]

    def split_tail(
        self, model: str, version: int, partition: int, payload: bytes, headers: dict[str, str]
    ) -> FloatArray:
        """Send an activation (raw bytes + x-shape/x-dtype headers); the cloud runs the segments of
        ``model`` version ``version`` from cut ``partition`` on."""
        return self.split_tail_timed(model, version, partition, payload, headers)[0]

    def split_tail_timed(
        self, model: str, version: int, partition: int, payload: bytes, headers: dict[str, str]
    ) -> tuple[FloatArray, float]:
        """`split_tail`, plus the milliseconds the cloud says it spent running the tail."""
        path = f"/v1/split/{model}/{version}/{partition}"
        answer = self._post(path, content=payload, headers=headers)
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

    def split_profile(self, model: str, version: int) -> list[float]:
        """Milliseconds per input of each segment of ``model`` ``version``, measured by the cloud on itself."""
        answer = self._get(f"/v1/split/{model}/{version}/profile")
        try:
            return [float(ms) for ms in answer["segment_ms"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._malformed("split profile", answer) from exc

    def telemetry(
        self,
        agent: str,
        metrics: dict[str, float | int | str | None],
        *,
        labels: dict[str, str] | None = None,
        models: dict[str, Any] | None = None,
    ) -> None:
        """Report the agent's status: flat ``metrics``, its ``labels`` and per-model version statistics."""
        body = {"agent": agent, "metrics": metrics, "labels": labels or {}, "models": models or {}}
        self._post("/v1/telemetry", json=body)


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
