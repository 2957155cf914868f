"""What a node has and how busy it is: psutil for CPU and memory, NVML (through ctypes) for GPUs.

NVML is read straight from ``libnvidia-ml.so.1`` when the NVIDIA driver is installed; without it the
node simply reports no GPUs (no extra Python package needed).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import psutil


class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class Nvml:
    """A minimal NVML binding: device count, name and utilization. ``Nvml.open()`` is None without a driver."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib

    @classmethod
    def open(cls) -> Nvml | None:
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            return None
        if lib.nvmlInit_v2() != 0:
            return None
        return cls(lib)

    def count(self) -> int:
        n = ctypes.c_uint(0)
        return n.value if self._lib.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 0 else 0

    def _handle(self, index: int) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        self._lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle))
        return handle

    def name(self, index: int) -> str:
        buffer = ctypes.create_string_buffer(96)
        self._lib.nvmlDeviceGetName(self._handle(index), buffer, ctypes.c_uint(96))
        return buffer.value.decode(errors="replace")

    def utilization_percent(self) -> float | None:
        """Mean GPU utilization over the node's devices (percent), None when there are none."""
        values = []
        for index in range(self.count()):
            rates = _Utilization()
            if self._lib.nvmlDeviceGetUtilizationRates(self._handle(index), ctypes.byref(rates)) == 0:
                values.append(float(rates.gpu))
        return sum(values) / len(values) if values else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Capacity:
    cpus: float
    memory_mib: int
    gpus: int
    gpu_type: str | None


class Monitor:
    """Samples this machine. The first CPU reading primes psutil; later ones cover the time since."""

    def __init__(self) -> None:
        self.nvml = Nvml.open()
        psutil.cpu_percent(interval=None)

    def capacity(self) -> Capacity:
        gpus = self.nvml.count() if self.nvml else 0
        gpu_type = self.nvml.name(0).replace(" ", "-") if self.nvml and gpus else None
        return Capacity(
            cpus=float(psutil.cpu_count() or 1),
            memory_mib=int(psutil.virtual_memory().total // 2**20),
            gpus=gpus,
            gpu_type=gpu_type,
        )

    def sample(self, running_replicas: int) -> dict[str, float | int | None]:
        """One heartbeat's body: utilization since the previous sample, in percent."""
        return {
            "cpu_percent": min(100.0, max(0.0, float(psutil.cpu_percent(interval=None)))),
            "memory_percent": min(100.0, max(0.0, float(psutil.virtual_memory().percent))),
            "gpu_percent": self.nvml.utilization_percent() if self.nvml else None,
            "running_replicas": running_replicas,
        }
