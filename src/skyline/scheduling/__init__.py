"""The scheduler loop, placement policies (one registry), forecasting and autoscaling; no heavy frameworks.

The one scheduler (`Scheduler`) asks one `Policy` method (``decide`` on a `RoundView`) in both worlds,
the simulator and the live control plane; policies are found in `POLICIES` and built with their typed
options. Forecasting and autoscaling live in their own subpackages. Names are imported on first use.
"""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "packing": ("NodeSpec", "Packer", "Request"),
        "policies": ("POLICIES", "make_policy", "policy_class"),
        "policy": ("Policy", "PolicyOptions", "options_for", "time_scaled", "view_of"),
        "reasons": ("unplaceable",),
        "scheduler": ("Scheduler",),
        "view": ("Decision", "JobView", "RoundView"),
    },
)
