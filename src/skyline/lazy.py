"""`lazy_exports`: a subpackage's public API, each name imported from its module on first use.

A subpackage lists its public names by the module that defines them. `import skyline.serving` then costs
nothing, and `skyline.serving.create_app` pulls in FastAPI only when asked for: a process that needs one
runtime (a compression worker) or the background-server helper (a node agent) never pays for the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, Sequence[str]]) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and the module-level ``__getattr__`` of ``package``, from {module: names it defines}."""
    module_of = {name: module for module, names in homes.items() for name in names}

    def load(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)

    return sorted(module_of), load
