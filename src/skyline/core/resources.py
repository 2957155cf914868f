"""`Resources`: an amount of CPU, memory and (possibly fractional) GPU."""

from __future__ import annotations

from dataclasses import dataclass

from skyline.errors import CapacityError, ConfigError

GPU_MILLI = 1000  # one whole GPU in gpu_milli


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """An amount of compute. Integers in milli-units so that sums and differences are exact.

    ``gpu_milli`` is thousandths of a GPU: 500 is half a GPU (Alibaba openb fractions), 8000 is eight.
    ``gpu_type`` names the GPU model (``"V100"``); ``None`` means any model (in a request) or unknown
    (in a capacity). Arithmetic keeps the type and refuses to mix two different ones.
    """

    cpu_milli: int = 0
    memory_mib: int = 0
    gpu_milli: int = 0
    gpu_type: str | None = None

    def __post_init__(self) -> None:
        for name in ("cpu_milli", "memory_mib", "gpu_milli"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"Resources.{name} must be an integer, got {value!r}")
            if value < 0:
                raise ConfigError(f"Resources.{name} must be >= 0, got {value}")
        if self.gpu_type is not None and not self.gpu_type:
            raise ConfigError("Resources.gpu_type must be a non-empty name or None")

    @classmethod
    def of(
        cls, *, cpus: float = 0.0, memory_mib: int = 0, gpus: float = 0.0, gpu_type: str | None = None
    ) -> Resources:
        """Build from whole units: ``Resources.of(cpus=4, gpus=0.5)``."""
        return cls(
            cpu_milli=round(cpus * 1000),
            memory_mib=memory_mib,
            gpu_milli=round(gpus * GPU_MILLI),
            gpu_type=gpu_type,
        )

    @property
    def gpus(self) -> float:
        """GPUs as a float (``gpu_milli / 1000``)."""
        return self.gpu_milli / GPU_MILLI

    @property
    def cpus(self) -> float:
        """CPU cores as a float (``cpu_milli / 1000``)."""
        return self.cpu_milli / 1000

    def is_zero(self) -> bool:
        return self.cpu_milli == 0 and self.memory_mib == 0 and self.gpu_milli == 0

    def _merged_type(self, other: Resources) -> str | None:
        if self.gpu_type and other.gpu_type and self.gpu_type != other.gpu_type:
            raise ConfigError(f"cannot combine GPU types {self.gpu_type!r} and {other.gpu_type!r}")
        return self.gpu_type or other.gpu_type

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cpu_milli=self.cpu_milli + other.cpu_milli,
            memory_mib=self.memory_mib + other.memory_mib,
            gpu_milli=self.gpu_milli + other.gpu_milli,
            gpu_type=self._merged_type(other),
        )

    def __sub__(self, other: Resources) -> Resources:
        """Take ``other`` out of ``self``; raises `CapacityError` rather than go negative."""
        if not other.fits_in(self):
            raise CapacityError(f"cannot take {other} out of {self}: it does not fit")
        return Resources(
            cpu_milli=self.cpu_milli - other.cpu_milli,
            memory_mib=self.memory_mib - other.memory_mib,
            gpu_milli=self.gpu_milli - other.gpu_milli,
            gpu_type=self.gpu_type,
        )

    def __mul__(self, times: int) -> Resources:
        """``replica * k``: the amount for ``k`` identical replicas."""
        if not isinstance(times, int) or times < 0:
            raise ConfigError(f"Resources can be multiplied by a whole number >= 0, got {times!r}")
        return Resources(
            cpu_milli=self.cpu_milli * times,
            memory_mib=self.memory_mib * times,
            gpu_milli=self.gpu_milli * times,
            gpu_type=self.gpu_type,
        )

    def fits_in(self, capacity: Resources) -> bool:
        """True when this request fits in ``capacity``, GPU model included (a request's ``None`` fits any)."""
        if self.gpu_milli and self.gpu_type and capacity.gpu_type != self.gpu_type:
            return False
        return (
            self.cpu_milli <= capacity.cpu_milli
            and self.memory_mib <= capacity.memory_mib
            and self.gpu_milli <= capacity.gpu_milli
        )

    def __str__(self) -> str:
        gpu = f"{self.gpus:g} GPU" + (f" {self.gpu_type}" if self.gpu_type else "")
        return f"({self.cpus:g} CPU, {self.memory_mib} MiB, {gpu})"
