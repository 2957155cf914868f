"""The `skyline` command line: one typer app, thin over the Python API (each command builds a config,
calls the library and renders)."""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {"app": ("app", "main")})
