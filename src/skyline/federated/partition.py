"""Non-IID client datasets: each class's rows are spread over the clients by Dirichlet(α) proportions.

Small α (0.1) gives each client a few dominant classes; large α (100) approaches an IID split. Every row
goes to exactly one client, and draws are repeated until each client holds at least ``min_rows`` rows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from skyline.errors import ConfigError

IntArray = npt.NDArray[np.int64]


def dirichlet_partition(
    labels: npt.ArrayLike,
    *,
    clients: int,
    alpha: float,
    seed: int = 0,
    min_rows: int = 2,
    max_tries: int = 100,
) -> list[IntArray]:
    """Row indices for each client (a partition of ``range(len(labels))``), reproducible from ``seed``."""
    y = np.asarray(labels)
    if clients < 1 or alpha <= 0:
        raise ConfigError(f"clients must be >= 1 and alpha > 0, got {clients} and {alpha}")
    if clients * min_rows > len(y):
        raise ConfigError(
            f"{len(y)} rows cannot give {clients} clients {min_rows} rows each; use fewer clients"
        )
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(clients)]
        for label in np.unique(y):
            rows = rng.permutation(np.flatnonzero(y == label))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for client, chunk in enumerate(np.split(rows, cuts)):
                parts[client].extend(int(r) for r in chunk)
        if min(len(p) for p in parts) >= min_rows:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ConfigError(
        f"could not give every one of {clients} clients {min_rows} rows with alpha {alpha} in {max_tries} draws; "
        "raise alpha or use fewer clients"
    )
