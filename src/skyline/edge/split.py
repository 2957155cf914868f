"""Split inference: profile a sequential network layer by layer, run its head on the edge, its tail in the cloud.

The edge device is emulated on this host: its per-layer latency is the cloud's profiled latency times
``edge_slowdown``, and `SplitExecutor` computes the head for real and waits out the rest of that time.
Activations cross the link as raw float32 bytes, or int8 (per-tensor affine quantization, 4× fewer bytes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from skyline.edge.partition import LayerProfile
from skyline.errors import ConfigError

FloatArray = npt.NDArray[np.float32]
SPLIT_INPUT_SHAPE = (3, 64, 64)


def split_network(*, num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """A VGG-style stack for 3×64×64 images whose activations first grow, then shrink (Neurosurgeon's case)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    channels = 3
    for width in (32, 64, 128, 128):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    layers += [nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, num_classes)]
    return nn.Sequential(*layers).eval()


PATCHIFY_INPUT_SHAPE = (3, 128, 128)


def patchify_network(*, num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """A CNN for 3×128×128 images with a cheap patchify stem (4×4 stride-4 convolution, as in ConvNeXt) that
    shrinks the input 3× before the heavy convolutions: the case where cutting after the stem pays off.

    Its units are blocks (convolution + ReLU, flatten + linear + ReLU), as a deployment fuses them: a cut
    between a convolution and its ReLU sends the same bytes as one after it, a tie no measurement resolves."""
    torch.manual_seed(seed)
    blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.ReLU())]
    channels = 16
    for width in (128, 256):
        blocks += [nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU())]
        blocks += [nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU()), nn.MaxPool2d(2)]
        channels = width
    blocks += [
        nn.Sequential(nn.Flatten(), nn.Linear(256 * 8 * 8, 256), nn.ReLU()),
        nn.Linear(256, num_classes),
    ]
    return nn.Sequential(*blocks).eval()


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitNetwork:
    """A network that edge and cloud can split: how to build it (weights from the seed) and its input."""

    build: Callable[..., nn.Sequential]
    input_shape: tuple[int, ...]


SPLIT_NETWORKS: dict[str, SplitNetwork] = {
    "split-vgg": SplitNetwork(build=split_network, input_shape=SPLIT_INPUT_SHAPE),
    "split-patchify": SplitNetwork(build=patchify_network, input_shape=PATCHIFY_INPUT_SHAPE),
}
"""Networks that edge and cloud can split, by name; both sides build the same weights from the seed."""


def layer_names(model: nn.Sequential) -> list[str]:
    """``index:kind`` of each unit; a block's kind lists its layers (``1:conv2d+relu``)."""

    def kind(layer: nn.Module) -> str:
        if isinstance(layer, nn.Sequential):
            return "+".join(kind(inner) for inner in layer)
        return type(layer).__name__.lower()

    return [f"{i}:{kind(layer)}" for i, layer in enumerate(model)]


def run_layers(model: nn.Sequential, start: int, stop: int, x: FloatArray) -> FloatArray:
    """Layers ``[start, stop)`` on ``x`` (a batch); the identity when the range is empty."""
    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        for layer in list(model)[start:stop]:
            tensor = layer(tensor)
        return tensor.numpy()


def profile_layers(
    model: nn.Sequential,
    input_shape: tuple[int, ...],
    *,
    edge_slowdown: float,
    repeats: int = 20,
    int8: bool = False,
) -> list[LayerProfile]:
    """Per-layer latency on this host (the cloud), × ``edge_slowdown`` for the edge, and output bytes.

    Each layer's latency is its fastest of ``repeats`` runs: on a shared machine the slow runs measure the
    neighbours, not the layer."""
    if edge_slowdown < 1:
        raise ConfigError(
            f"edge_slowdown must be >= 1 (the edge is not faster than the cloud), got {edge_slowdown}"
        )
    layers = list(model)
    x = torch.zeros((1, *input_shape))
    timings: list[list[float]] = [[] for _ in layers]
    with torch.inference_mode():
        for _ in range(repeats + 2):  # two warm-up passes
            tensor = x
            for i, layer in enumerate(layers):
                started = time.perf_counter()
                tensor = layer(tensor)
                timings[i].append((time.perf_counter() - started) * 1e3)
        sizes, tensor = [], x
        for layer in layers:
            tensor = layer(tensor)
            sizes.append(tensor.numel() * (1 if int8 else 4))
    medians = [float(np.min(t[2:])) for t in timings]
    return [
        LayerProfile(name=name, edge_ms=ms * edge_slowdown, cloud_ms=ms, output_bytes=size)
        for name, ms, size in zip(layer_names(model), medians, sizes, strict=True)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodedActivation:
    payload: bytes
    headers: dict[str, str]


def encode_activation(activation: FloatArray, *, int8: bool) -> EncodedActivation:
    """Raw bytes plus the headers the cloud needs to decode them (`skyline.edge.cloud_app.decode_activation`)."""
    shape = ",".join(str(d) for d in activation.shape)
    if not int8:
        return EncodedActivation(
            payload=np.ascontiguousarray(activation, dtype=np.float32).tobytes(),
            headers={"x-shape": shape, "x-dtype": "float32", "content-type": "application/octet-stream"},
        )
    low, high = float(activation.min()), float(activation.max())
    scale = (high - low) / 255.0 or 1.0
    zero_point = round(-128 - low / scale)
    quantized = np.clip(np.round(activation / scale) + zero_point, -128, 127).astype(np.int8)
    return EncodedActivation(
        payload=quantized.tobytes(),
        headers={
            "x-shape": shape,
            "x-dtype": "int8",
            "x-scale": repr(scale),
            "x-zero-point": str(zero_point),
            "content-type": "application/octet-stream",
        },
    )


def tail_runner(model: nn.Sequential) -> Callable[[int, FloatArray], FloatArray]:
    """The cloud side: run layers ``[partition, n)`` and return class probabilities."""
    n = len(model)

    def run(partition: int, activation: FloatArray) -> FloatArray:
        if not 0 <= partition < n:
            raise ConfigError(f"partition must be in 0..{n - 1} for a cloud tail, got {partition}")
        logits = run_layers(model, partition, n, activation)
        return np.asarray(torch.softmax(torch.from_numpy(logits), dim=1).numpy(), dtype=np.float32)

    return run


class SplitExecutor:
    """The edge side: run the head at the edge's profiled speed, send the activation, get the cloud's answer.

    The emulated edge device takes ``edge_ms[:k].sum()`` per input for the head of cut ``k``: it computes the head for
    real and then waits out the rest of that time (a dedicated device does not slow down when this shared
    host is busy; if the real computation took longer, nothing is added).
    """

    def __init__(
        self,
        model: nn.Sequential,
        send_tail: Callable[[int, EncodedActivation], FloatArray],
        *,
        edge_ms: Sequence[float],
        int8: bool = False,
    ) -> None:
        if len(edge_ms) != len(model):
            raise ConfigError(f"edge_ms needs one latency per layer ({len(model)}), got {len(edge_ms)}")
        self.model, self.send_tail, self.edge_ms, self.int8 = model, send_tail, list(edge_ms), int8
        self.partition = len(model)

    def infer(self, x: FloatArray, partition: int | None = None) -> FloatArray:
        """Class probabilities for a batch ``x`` with ``partition`` (default: the current one)."""
        n = len(self.model)
        cut = self.partition if partition is None else partition
        if not 0 <= cut <= n:
            raise ConfigError(f"partition must be in 0..{n}, got {cut}")
        head = self.run_on_edge(x, 0, cut)
        if cut == n:
            return _softmax(head)
        return self.send_tail(cut, encode_activation(head, int8=self.int8))

    def finish_on_edge(self, head: FloatArray, partition: int) -> FloatArray:
        """Class probabilities from the head's activation at ``partition``, the rest run on the edge (the
        fallback when the cloud cannot take the tail: the head is not computed twice)."""
        return _softmax(self.run_on_edge(head, partition, len(self.model)))

    def run_on_edge(self, x: FloatArray, start: int, stop: int) -> FloatArray:
        """Layers ``[start, stop)`` at the emulated edge's speed."""
        started = time.perf_counter()
        out = run_layers(self.model, start, stop, x)
        # The profile is per input: a batch of N takes the emulated edge N times as long.
        remaining_s = len(x) * sum(self.edge_ms[start:stop]) / 1e3 - (time.perf_counter() - started)
        if remaining_s > 0:
            time.sleep(remaining_s)
        return out


def _softmax(logits: FloatArray) -> FloatArray:
    return np.asarray(torch.softmax(torch.from_numpy(logits), dim=1).numpy(), dtype=np.float32)
