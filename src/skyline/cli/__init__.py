"""The `skyline` command line: one typer app, thin over the Python API."""
