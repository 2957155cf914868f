"""The scheduler loop, placement policies (one registry), forecasting and autoscaling; no heavy frameworks.

The one scheduler (`Scheduler`) asks one `Policy` method (``decide`` on a `RoundView`) in both worlds,
the simulator and the live control plane; policies are found in `POLICIES` and built with their typed
options. Forecasting and autoscaling live in their own subpackages. Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "packing": ("NodeSpec", "Packer", "Request"),
    "policies": ("POLICIES", "make_policy", "policy_class"),
    "policy": ("Policy", "PolicyOptions", "options_for", "time_scaled", "view_of"),
    "reasons": ("unplaceable",),
    "scheduler": ("Scheduler",),
    "view": ("Decision", "JobView", "RoundView"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)  # the public API: the names above, by the module that defines them


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
