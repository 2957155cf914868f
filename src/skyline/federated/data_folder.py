"""A node's own training data: a folder of ``*.npz`` shards, each with ``x`` (rows, *input_shape) float32
and ``y`` (rows,) integer labels — what an edge agent holds (a dataset put there, plus the labelled records
it collected) and what its SuperNode trains on (``--node-config data-path=FOLDER``)."""

from __future__ import annotations

import logging
import os
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.errors import ConfigError, NotFoundError

log = logging.getLogger("skyline.federated.data")


def write_rows(folder: Path, x: npt.ArrayLike, y: npt.ArrayLike, *, name: str | None = None) -> Path:
    """Add a shard of rows to ``folder`` (atomically: a reader never sees half a shard); returns its path."""
    features, labels = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
    if features.ndim < 2 or labels.shape != (len(features),) or len(features) == 0:
        raise ConfigError(
            f"need x of shape (rows, ...) and y of shape (rows,), got {features.shape}, {labels.shape}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    stem = name or f"rows-{time.time_ns()}-{uuid.uuid4().hex[:12]}"  # two writers never share a name
    final = folder / f"{stem}.npz"
    partial = folder / f".{stem}.partial.npz"
    np.savez(partial, x=features, y=labels)
    os.replace(partial, final)
    return final


def read_rows(folder: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Every row of every readable shard in ``folder``, in file-name order. A corrupt shard (a torn copy, a
    stray file) is skipped with a warning: one bad file never stops a node from training on the rest.
    `NotFoundError` if no shard is readable."""
    shards = sorted(p for p in Path(folder).glob("*.npz") if not p.name.startswith("."))
    xs: list[npt.NDArray[Any]] = []
    ys: list[npt.NDArray[Any]] = []
    skipped = 0
    for shard in shards:
        try:  # opened here, not by np.load: a file numpy fails to parse is still closed
            with shard.open("rb") as file, np.load(file) as data:
                x, y = np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"], dtype=np.int64)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("skipping %s: not a shard with arrays x and y (%s)", shard, exc)
            skipped += 1
            continue
        xs.append(x)
        ys.append(y)
    if not xs:
        raise NotFoundError(
            f"no training data in {folder}"
            + (f" ({skipped} unreadable shard(s) skipped)" if skipped else "")
            + ": put .npz shards (x, y) there or label records"
        )
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) != 1:
        raise ConfigError(f"the shards in {folder} disagree on the input shape: {sorted(shapes)}")
    return np.concatenate(xs), np.concatenate(ys)
