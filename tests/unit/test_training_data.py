"""Datasets and splits: deterministic, disjoint, stratified, normalized on train only; clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.errors import ConfigError, DataError, NotFoundError
from skyline.training.data import load_dataset, split_indices

pytestmark = pytest.mark.unit


def test_the_same_seed_gives_the_same_splits_and_another_seed_others() -> None:
    first, again, other = (load_dataset("digits", seed=s) for s in (3, 3, 4))
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(first, name).x, getattr(again, name).x)
        assert torch.equal(getattr(first, name).y, getattr(again, name).y)
    assert not torch.equal(first.test.y, other.test.y)


def test_digits_splits_are_disjoint_cover_everything_and_are_stratified() -> None:
    labels = np.repeat(np.arange(10), 180)
    train, val, test = split_indices(labels, fractions=(0.15, 0.2), seed=0, stratify=True)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert sorted([*train, *val, *test]) == list(range(len(labels)))
    assert (len(train), len(val), len(test)) == (1170, 270, 360)
    for rows in (train, val, test):  # every class in the same proportion: 1/10 each
        counts = np.bincount(labels[rows], minlength=10)
        assert counts.max() - counts.min() <= 1


def test_digits_has_the_documented_shape_and_train_only_normalization() -> None:
    data = load_dataset("digits", seed=0)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10 and data.task == "classification"
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    # Fitted on train: exactly mean 0 / std 1 there; the held-out splits are only approximately so.
    assert float(data.train.x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(data.train.x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert float(data.test.x.mean()) != pytest.approx(0.0, abs=1e-5)


@settings(max_examples=20, deadline=None)
@given(
    rows=st.integers(min_value=40, max_value=400),
    val=st.floats(min_value=0.05, max_value=0.4),
    test=st.floats(min_value=0.05, max_value=0.4),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_splits_never_overlap_and_are_reproducible(rows: int, val: float, test: float, seed: int) -> None:
    labels = np.zeros(rows)
    first = split_indices(labels, fractions=(val, test), seed=seed, stratify=False)
    second = split_indices(labels, fractions=(val, test), seed=seed, stratify=False)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert sum(len(part) for part in first) == rows == len(set(np.concatenate(first).tolist()))


def test_missing_fashion_mnist_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYLINE_FASHION_MNIST", str(tmp_path))
    with pytest.raises(NotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_csv_classification_with_string_labels(tmp_path: Path) -> None:
    rows = ["a,b,kind"] + [f"{i},{i % 3},{'cat' if i % 2 else 'dog'}" for i in range(60)]
    path = tmp_path / "pets.csv"
    path.write_text("\n".join(rows) + "\n")
    data = load_dataset("csv", path=path, label_column="kind")
    assert data.task == "classification" and data.class_names == ("cat", "dog")
    assert data.input_shape == (2,) and len(data.train) + len(data.val) + len(data.test) == 60
    assert torch.allclose(data.train.x.mean(dim=0), torch.zeros(2), atol=1e-5)  # per-column statistics


def test_csv_float_labels_are_regression_and_bad_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i * 0.5 + 0.25}\n" for i in range(40)))
    assert load_dataset("csv", path=path).task == "regression"
    path.write_text("x,y\n1,2\n3\n")
    with pytest.raises(DataError, match=r"r\.csv:3"):
        load_dataset("csv", path=path)
    with pytest.raises(ConfigError, match="no label column 'z'"):
        load_dataset("csv", path=tmp_path / "r.csv", label_column="z")
    with pytest.raises(ConfigError, match="--data"):
        load_dataset("csv")


def test_synthetic_linear_and_unknown_names() -> None:
    data = load_dataset("synthetic-linear")
    assert data.task == "regression" and data.num_classes == 1 and data.input_shape == (8,)
    with pytest.raises(NotFoundError, match="datasets are digits"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="sum < 1"):
        load_dataset("digits", val_fraction=0.6, test_fraction=0.5)
