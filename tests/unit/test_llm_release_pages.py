"""release_pages: the whole pages under a consumed tensor go back to the kernel, and nothing else does."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skyline.llm.loader import release_pages

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(sys.platform != "linux", reason="madvise(MADV_DONTNEED) is what it calls, on Linux"),
]

PAGE_FLOATS = mmap.PAGESIZE // 4


def test_anonymous_pages_under_the_tensor_are_released_and_its_neighbours_kept() -> None:
    whole = torch.from_numpy(np.arange(8 * PAGE_FLOATS, dtype=np.float32) + 1)  # no zeros
    before = whole.clone()
    first, last = PAGE_FLOATS + 5, 5 * PAGE_FLOATS + 7
    release_pages(whole[first:last])
    # Expected: the elements on whole pages inside [first, last), by address (numpy's buffer is not
    # page-aligned); a released anonymous page reads back as zeros.
    address = whole.data_ptr() + 4 * torch.arange(len(whole))
    start = -(-(whole.data_ptr() + 4 * first) // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (whole.data_ptr() + 4 * last) // mmap.PAGESIZE * mmap.PAGESIZE
    inside = (address >= start) & (address < end)
    assert int(inside.sum()) >= 3 * PAGE_FLOATS
    assert bool((whole[inside] == 0).all())
    assert torch.equal(whole[~inside], before[~inside])


def test_a_private_file_mapping_reads_the_file_again_after_release(tmp_path: Path) -> None:
    values = np.random.default_rng(0).standard_normal(4 * PAGE_FLOATS).astype(np.float32)
    path = tmp_path / "weights.bin"
    values.tofile(path)
    # mode "c" maps the file privately (copy-on-write), as transformers maps a safetensors file
    mapped = torch.from_numpy(np.memmap(path, dtype=np.float32, mode="c"))
    assert torch.equal(mapped, torch.from_numpy(values))  # every page is now resident
    release_pages(mapped)
    assert torch.equal(mapped, torch.from_numpy(values))  # not lost: the pages come back from the file


def test_a_strided_view_is_left_alone() -> None:
    whole = torch.ones(4 * PAGE_FLOATS).view(4, PAGE_FLOATS)
    release_pages(whole.t())
    assert bool((whole == 1).all())
