"""Where the real data lives: ``../shared/data`` beside the repository, or ``$SKYLINE_SHARED_DATA``."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path | None:
    """The shared data folder if there is one, else None (commands then take paths or go synthetic)."""
    explicit = os.environ.get("SKYLINE_SHARED_DATA")
    if explicit:
        path = Path(explicit)
        return path if path.is_dir() else None
    for start in (Path.cwd(), Path(__file__).resolve()):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data"
            if candidate.is_dir():
                return candidate
    return None
