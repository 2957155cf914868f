"""The paged KV cache's bookkeeping: which fixed-size blocks each sequence holds, and the prefix cache.

The KV cache is ``num_blocks`` blocks of ``block_size`` token slots. A sequence holds a *block table*
(the blocks of its tokens, in order); it grows one block at a time, so no sequence ever reserves memory for
tokens it may never produce. A block that is full is *cached*: it is keyed by a chained hash of its tokens
(its own tokens and, through the parent's hash, every token before it), so a later prompt with the same
prefix finds it and shares it instead of recomputing it. Blocks are reference-counted; a block that no
sequence holds goes to the free queue, where a cached one stays findable until it is reused (evicted) in
least-recently-freed order. Shared blocks are always full and never written again, so sharing needs no
copy-on-write.

This module holds no tensors (the model runner owns the KV memory; block ``i`` is its slots
``[i * block_size, (i + 1) * block_size)``), so it is tested without a model. Design after vLLM v1's
``BlockPool`` and ``KVCacheManager``, smaller.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from skyline.errors import ConfigError

__all__ = ["ROOT_HASH", "BlockPool", "KVCacheManager", "hash_block_tokens"]

ROOT_HASH = 0x5C7_11E  # the parent hash of a sequence's first block


def hash_block_tokens(parent_hash: int, tokens: Sequence[int]) -> int:
    """The chained hash of one full block: it identifies the block's tokens and every token before them."""
    return hash((parent_hash, tuple(tokens)))


class BlockPool:
    """Reference-counted blocks, a free queue in eviction order, and the hash → block map of cached blocks."""

    def __init__(self, num_blocks: int, *, enable_caching: bool = True) -> None:
        if num_blocks < 1:
            raise ConfigError(f"num_blocks is {num_blocks}; it must be ≥ 1")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.ref_counts = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.cached: dict[int, int] = {}  # block hash → block id
        # Free blocks, first to be reused first. Uncached blocks sit at the front (nothing is lost by
        # reusing them); cached ones are appended as they are freed, so the least recently used go first.
        self.free_queue: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))

    @property
    def num_free(self) -> int:
        """Blocks no sequence holds (cached ones included: they are evicted when needed)."""
        return len(self.free_queue)

    def allocate(self, n: int) -> list[int]:
        """Take ``n`` free blocks (evicting cached ones); the caller checks ``num_free`` first."""
        if n > len(self.free_queue):
            raise ConfigError(f"asked for {n} KV blocks, {len(self.free_queue)} are free")
        blocks = []
        for _ in range(n):
            block, _ = self.free_queue.popitem(last=False)
            self._evict(block)
            self.ref_counts[block] = 1
            blocks.append(block)
        return blocks

    def _evict(self, block: int) -> None:
        block_hash = self.block_hash[block]
        if block_hash is not None:
            self.block_hash[block] = None
            if self.cached.get(block_hash) == block:
                del self.cached[block_hash]

    def lookup(self, block_hash: int) -> int | None:
        """The cached block with this hash, or None."""
        return self.cached.get(block_hash)

    def touch(self, blocks: Sequence[int]) -> None:
        """Take one more reference to each block (a prefix-cache hit), taking free ones off the queue."""
        for block in blocks:
            if self.ref_counts[block] == 0:
                del self.free_queue[block]
            self.ref_counts[block] += 1

    def free(self, blocks: Sequence[int]) -> None:
        """Drop one reference to each block; a block nobody holds goes back to the free queue.

        Pass a sequence's blocks tail first: its last blocks are the least likely to be shared, so they
        are evicted first.
        """
        for block in blocks:
            self.ref_counts[block] -= 1
            if self.ref_counts[block] < 0:
                raise AssertionError(f"block {block} freed more often than it was taken")
            if self.ref_counts[block] == 0:
                self.free_queue[block] = None
                if self.block_hash[block] is None:
                    self.free_queue.move_to_end(block, last=False)

    def cache(self, block: int, block_hash: int) -> None:
        """Mark a full block as holding the tokens ``block_hash`` names, so later prompts can share it.

        If an identical block is cached already, the first one stays the shared copy; this one stays
        private to its sequence (block tables only grow, they are never rewritten).
        """
        if not self.enable_caching or self.block_hash[block] is not None:
            return
        self.block_hash[block] = block_hash
        self.cached.setdefault(block_hash, block)


@dataclass(slots=True)
class _Holding:
    blocks: list[int] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)  # chained hashes of the first len(hashes) blocks


class KVCacheManager:
    """Block tables per sequence over one :class:`BlockPool`, with automatic prefix caching."""

    def __init__(self, num_blocks: int, block_size: int, *, enable_caching: bool = True) -> None:
        if block_size < 1:
            raise ConfigError(f"block_size is {block_size}; it must be ≥ 1")
        self.pool = BlockPool(num_blocks, enable_caching=enable_caching)
        self.block_size = block_size
        self._held: dict[str, _Holding] = {}

    @property
    def num_used(self) -> int:
        """Blocks held by at least one sequence."""
        return self.pool.num_blocks - self.pool.num_free

    def blocks_for(self, num_tokens: int) -> int:
        """How many blocks ``num_tokens`` tokens occupy."""
        return -(-num_tokens // self.block_size)

    def block_table(self, seq_id: str) -> list[int]:
        """The blocks a sequence holds, in token order (empty if it holds none)."""
        holding = self._held.get(seq_id)
        return holding.blocks if holding is not None else []

    def find_cached_prefix(self, token_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """(blocks, their hashes) of the longest cached prefix of ``token_ids`` in whole blocks.

        The last token is never served from the cache: the model must compute it to produce logits.
        """
        if not self.pool.enable_caching:
            return [], []
        blocks: list[int] = []
        hashes: list[int] = []
        parent = ROOT_HASH
        bs = self.block_size
        for i in range((len(token_ids) - 1) // bs):
            parent = hash_block_tokens(parent, token_ids[i * bs : (i + 1) * bs])
            block = self.pool.lookup(parent)
            if block is None:
                break
            blocks.append(block)
            hashes.append(parent)
        return blocks, hashes

    def allocate(
        self,
        seq_id: str,
        num_tokens: int,
        cached: tuple[list[int], list[int]] = ([], []),
    ) -> bool:
        """Make the sequence's table cover ``num_tokens`` tokens; False (and no change) if blocks run out.

        ``cached`` is what :meth:`find_cached_prefix` returned for a sequence that holds no blocks yet:
        those blocks are shared instead of allocated.
        """
        holding = self._held.get(seq_id)
        have = len(holding.blocks) if holding is not None else 0
        hit_blocks, hit_hashes = cached
        if hit_blocks and have:
            raise AssertionError(f"sequence {seq_id!r} already holds blocks; cache hits only at admission")
        need_new = self.blocks_for(num_tokens) - have - len(hit_blocks)
        # Cached blocks nobody holds sit in the free queue: sharing them takes them off it.
        revived = sum(1 for b in hit_blocks if self.pool.ref_counts[b] == 0)
        if max(need_new, 0) + revived > self.pool.num_free:
            return False
        if holding is None:
            holding = self._held[seq_id] = _Holding()
        if hit_blocks:
            self.pool.touch(hit_blocks)
            holding.blocks.extend(hit_blocks)
            holding.hashes.extend(hit_hashes)
        if need_new > 0:
            holding.blocks.extend(self.pool.allocate(need_new))
        return True

    def cache_full_blocks(self, seq_id: str, token_ids: Sequence[int], num_computed: int) -> None:
        """Register the sequence's blocks that ``num_computed`` computed tokens have filled."""
        holding = self._held[seq_id]
        bs = self.block_size
        full = min(num_computed // bs, len(holding.blocks))
        parent = holding.hashes[-1] if holding.hashes else ROOT_HASH
        for i in range(len(holding.hashes), full):
            parent = hash_block_tokens(parent, token_ids[i * bs : (i + 1) * bs])
            holding.hashes.append(parent)
            self.pool.cache(holding.blocks[i], parent)

    def free(self, seq_id: str) -> None:
        """Return every block the sequence holds (finish, abort, error, preemption); idempotent."""
        holding = self._held.pop(seq_id, None)
        if holding is not None:
            self.pool.free(holding.blocks[::-1])
