"""Datasets and their splits: deterministic, seeded, stratified, normalized on the training split only.

``load_dataset(name, seed=...)`` returns a `DatasetSplits` whose ``train``, ``val`` and ``test`` hold float32
inputs ``x`` and labels ``y`` (int64 class ids for classification, float32 targets for regression). The same
name, seed and fractions always give the same rows in the same order, and no row is in two splits.

Datasets (the `DATASETS` registry):

- ``digits``: scikit-learn's 1,797 handwritten 8×8 digits (real data), inputs ``(1, 8, 8)``, 10 classes.
- ``fashion-mnist``: the 70,000 28×28 Zalando images from Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``, or ``$SKYLINE_FASHION_MNIST``); the official 10,000-image test set
  is kept as the test split and validation is carved, stratified, from the 60,000 training images.
- ``csv``: a user's tabular file (``path=``) with a header row and a label column (``label_column=``, default
  the last); a label column of integers or strings is classification, of other numbers regression.
- ``synthetic-linear``: ``y = x·w + 0.1·noise`` with 8 features, a regression sanity check.

Normalization statistics (mean and standard deviation) are fitted on the training split and applied to all
three, so nothing about the validation or test rows leaks into training: one scalar for images, one per
column for tabular data.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from skyline.errors import ConfigError, DataError, NotFoundError

if TYPE_CHECKING:
    import torch

Task = Literal["classification", "regression"]
FloatArray = npt.NDArray[np.float32]
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True, slots=True)
class Split:
    """One split: inputs ``x`` (N, *input_shape) float32 and targets ``y`` (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetSplits:
    """A dataset split three ways, normalized with statistics of ``train`` only."""

    name: str
    task: Task
    train: Split
    val: Split
    test: Split
    num_classes: int  # classes for classification; 1 (one output) for regression
    input_shape: tuple[int, ...]  # one sample's shape, e.g. (1, 8, 8) or (8,)
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Raw:
    """Unsplit data as loaded: x (N, ...) float32, y (N,) int64 or float32, optional fixed test rows."""

    x: FloatArray
    y: npt.NDArray[np.generic]
    task: Task
    class_names: tuple[str, ...] = ()
    test_x: FloatArray | None = None
    test_y: npt.NDArray[np.generic] | None = None


def _digits(_: Path | None, __: str | None) -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float32).reshape(-1, 1, 8, 8)
    return _Raw(
        x, np.asarray(bunch.target, dtype=np.int64), "classification", tuple(str(i) for i in range(10))
    )


def _read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """An IDX file (the MNIST format): a magic number giving the rank, the dimensions, then uint8 data."""
    if not path.is_file():
        raise NotFoundError(
            f"Fashion-MNIST file {path} is missing; install the Debian package with "
            "`sudo apt-get install dataset-fashion-mnist` (or run `make setup` as root), or point "
            "$SKYLINE_FASHION_MNIST at a folder holding the four *-ubyte.gz files"
        )
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    rank = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if array.size != int(np.prod(dims)):
        raise DataError(f"{path}: expected {dims} values, found {array.size}; the file is truncated")
    return array.reshape(dims)


FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"
)  # fmt: skip


def _fashion_mnist(_: Path | None, __: str | None) -> _Raw:
    folder = Path(os.environ.get("SKYLINE_FASHION_MNIST", FASHION_MNIST_DIR))

    def images(prefix: str) -> FloatArray:
        raw = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        return raw.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0

    def labels(prefix: str) -> npt.NDArray[np.int64]:
        return _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)

    return _Raw(
        images("train"),
        labels("train"),
        "classification",
        FASHION_CLASSES,
        test_x=images("t10k"),
        test_y=labels("t10k"),
    )


def _synthetic_linear(_: Path | None, __: str | None) -> _Raw:
    rng = np.random.default_rng(1234)  # the data itself is fixed; `seed` only changes the split
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    w = np.linspace(-2.0, 2.0, 8, dtype=np.float32)
    y = (x @ w + 0.5 + 0.1 * rng.normal(size=2000)).astype(np.float32)
    return _Raw(x, y, "regression")


def _csv(path: Path | None, label_column: str | None) -> _Raw:
    if path is None:
        raise ConfigError("dataset 'csv' needs a file: pass --data PATH (a CSV with a header row)")
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; pass an existing CSV file") from exc
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row, found {len(rows)} row(s)")
    header = [h.strip() for h in rows[0]]
    label = label_column or header[-1]
    if label not in header:
        raise ConfigError(f"{path}: no label column {label!r}; columns are {', '.join(header)}")
    target = header.index(label)
    features, labels = [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line_no}: {len(row)} fields, the header has {len(header)}")
        try:
            features.append([float(v) for i, v in enumerate(row) if i != target])
        except ValueError:
            raise DataError(f"{path}:{line_no}: a feature is not a number: {row}") from None
        labels.append(row[target].strip())
    x = np.asarray(features, dtype=np.float32)
    try:
        numeric = np.asarray([float(v) for v in labels])
    except ValueError:
        numeric = None
    if numeric is not None and not np.all(numeric == np.round(numeric)):
        return _Raw(x, numeric.astype(np.float32), "regression")
    names = tuple(sorted(set(labels), key=lambda v: (float(v), v) if numeric is not None else (0.0, v)))
    index = {name: i for i, name in enumerate(names)}
    return _Raw(x, np.asarray([index[v] for v in labels], dtype=np.int64), "classification", names)


DATASETS: dict[str, Callable[[Path | None, str | None], _Raw]] = {
    "digits": _digits,
    "fashion-mnist": _fashion_mnist,
    "csv": _csv,
    "synthetic-linear": _synthetic_linear,
}


def split_indices(
    y: npt.NDArray[np.generic], *, fractions: tuple[float, float], seed: int, stratify: bool
) -> tuple[npt.NDArray[np.int64], ...]:
    """Row indices of (train, val, test) for fractions (val, test): seeded, stratified, disjoint, sorted.

    Stratified means each class appears in every split in (almost) the same proportion as in the whole.
    """
    from sklearn.model_selection import train_test_split

    val_fraction, test_fraction = fractions
    rows = np.arange(len(y), dtype=np.int64)
    # Whole row counts, rounded once, so that the sizes do not depend on float quirks of the fractions.
    val_rows, test_rows = round(val_fraction * len(y)), round(test_fraction * len(y))
    labels = y if stratify else None
    try:
        train, rest = train_test_split(
            rows, test_size=val_rows + test_rows, random_state=seed, stratify=labels
        )
        if test_rows == 0:
            return np.sort(train), np.sort(rest), np.empty(0, dtype=np.int64)
        val, test = train_test_split(
            rest, test_size=test_rows, random_state=seed, stratify=None if labels is None else y[rest]
        )
    except ValueError as exc:
        raise ConfigError(f"cannot split {len(y)} rows {fractions} stratified: {exc}; use more data") from exc
    return np.sort(train), np.sort(val), np.sort(test)


def _normalizer(x: FloatArray, per_column: bool) -> tuple[FloatArray, FloatArray]:
    axis = 0 if per_column else None
    mean = np.asarray(x.mean(axis=axis), dtype=np.float32)
    std = np.asarray(x.std(axis=axis), dtype=np.float32)
    return mean, np.where(std > 1e-8, std, 1.0).astype(np.float32)


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    path: Path | None = None,
    label_column: str | None = None,
) -> DatasetSplits:
    """Load ``name`` and split it (train, val, test) deterministically from ``seed``; see the module doc.

    For ``fashion-mnist`` the official test set is the test split and ``test_fraction`` is ignored.
    """
    import torch

    if name not in DATASETS:
        raise NotFoundError(f"unknown dataset {name!r}; datasets are {', '.join(DATASETS)}")
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in (0, 1) with a sum < 1"
        )
    raw = DATASETS[name](path, label_column)
    stratify = raw.task == "classification"
    if raw.test_x is not None and raw.test_y is not None:
        train_rows, val_rows, _ = split_indices(
            raw.y, fractions=(val_fraction, 0.0), seed=seed, stratify=stratify
        )
        parts = [
            (raw.x[train_rows], raw.y[train_rows]),
            (raw.x[val_rows], raw.y[val_rows]),
            (raw.test_x, raw.test_y),
        ]
    else:
        rows = split_indices(raw.y, fractions=(val_fraction, test_fraction), seed=seed, stratify=stratify)
        parts = [(raw.x[r], raw.y[r]) for r in rows]
    mean, std = _normalizer(parts[0][0], per_column=raw.x.ndim == 2)
    splits = [
        Split(torch.from_numpy((x - mean) / std).float(), torch.from_numpy(np.ascontiguousarray(y)))
        for x, y in parts
    ]
    num_classes = len(raw.class_names) if stratify else 1
    return DatasetSplits(
        name=name,
        task=raw.task,
        train=splits[0],
        val=splits[1],
        test=splits[2],
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in raw.x.shape[1:]),
        class_names=raw.class_names,
    )
