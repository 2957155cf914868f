"""The paged KV cache's bookkeeping, without a model: allocation, sharing, eviction, and its invariants."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from skyline.llm.block_manager import ROOT_HASH, BlockPool, KVCacheManager, hash_block_tokens

pytestmark = pytest.mark.unit


def test_a_sequence_grows_one_block_at_a_time_and_returns_every_block() -> None:
    kv = KVCacheManager(8, 4)
    assert kv.allocate("a", 5)
    assert len(kv.block_table("a")) == 2
    assert kv.allocate("a", 8)  # still two blocks
    assert len(kv.block_table("a")) == 2
    assert kv.allocate("a", 9)
    assert len(kv.block_table("a")) == 3
    assert kv.num_used == 3
    kv.free("a")
    assert kv.num_used == 0
    assert kv.block_table("a") == []
    kv.free("a")  # idempotent


def test_allocation_that_does_not_fit_changes_nothing() -> None:
    kv = KVCacheManager(4, 4)
    assert kv.allocate("a", 12)
    assert not kv.allocate("b", 8)
    assert kv.block_table("b") == []
    assert kv.pool.num_free == 1


def test_a_cached_prefix_is_shared_and_never_includes_the_last_token() -> None:
    kv = KVCacheManager(16, 4)
    prompt = list(range(10))  # blocks [0..3] [4..7] and 2 tokens
    assert kv.allocate("a", len(prompt))
    kv.cache_full_blocks("a", prompt, len(prompt))
    blocks, hashes = kv.find_cached_prefix(prompt)
    assert blocks == kv.block_table("a")[:2]
    assert len(hashes) == 2
    # Exactly 8 tokens: the second block holds the last token, which must be computed again.
    blocks8, _ = kv.find_cached_prefix(prompt[:8])
    assert blocks8 == kv.block_table("a")[:1]
    # A different first block breaks the chain even if the second block's tokens match.
    assert kv.find_cached_prefix([99, *prompt[1:]]) == ([], [])
    assert kv.allocate("b", len(prompt), (blocks, hashes))
    assert kv.block_table("b")[:2] == blocks
    assert kv.pool.ref_counts[blocks[0]] == 2


def test_freed_cached_blocks_stay_findable_until_evicted_least_recently_used_first() -> None:
    kv = KVCacheManager(4, 2)
    first, second = [1, 2, 3], [7, 8, 9]
    for name, tokens in (("a", first), ("b", second)):
        assert kv.allocate(name, 3)
        kv.cache_full_blocks(name, tokens, 3)
        kv.free(name)
    assert kv.num_used == 0
    assert kv.find_cached_prefix(first)[0] and kv.find_cached_prefix(second)[0]
    # Four blocks: the two unhashed tail blocks are reused first, then the oldest cached block ("a"'s).
    assert kv.allocate("c", 6)
    assert kv.find_cached_prefix(first) == ([], [])
    assert kv.find_cached_prefix(second)[0]


def test_hit_on_a_free_cached_block_counts_against_free_space() -> None:
    kv = KVCacheManager(3, 2)
    assert kv.allocate("a", 3)
    kv.cache_full_blocks("a", [1, 2, 3], 3)
    kv.free("a")
    hit = kv.find_cached_prefix([1, 2, 3, 4, 5])
    assert len(hit[0]) == 1
    assert kv.allocate("b", 6, hit)  # 1 shared + 2 new = all 3 blocks
    assert kv.pool.num_free == 0


def test_pool_rejects_overdraw_and_double_free() -> None:
    pool = BlockPool(2)
    blocks = pool.allocate(2)
    with pytest.raises(Exception, match="free"):
        pool.allocate(1)
    pool.free(blocks)
    with pytest.raises(AssertionError):
        pool.free(blocks[:1])


class BlockManagerMachine(RuleBasedStateMachine):
    """Random add / compute / append / share / finish / abort: nothing leaked, nothing double-owned."""

    BLOCK_SIZE = 2

    @initialize(num_blocks=st.integers(1, 16))
    def start(self, num_blocks: int) -> None:
        self.kv = KVCacheManager(num_blocks, self.BLOCK_SIZE)
        self.tokens: dict[str, list[int]] = {}
        self.computed: dict[str, int] = {}
        self.next_id = 0

    # Prompts share one of a few "system prompts", so prefix hits (and live sharing) are frequent.
    @rule(
        system=st.sampled_from([(), (0, 1, 0, 1), (2, 2, 1, 0, 1)]),
        user=st.lists(st.integers(0, 2), min_size=1, max_size=5),
    )
    def add(self, system: tuple[int, ...], user: list[int]) -> None:
        prompt = [*system, *user]
        seq = f"s{self.next_id}"
        self.next_id += 1
        hit = self.kv.find_cached_prefix(prompt)
        if self.kv.allocate(seq, len(prompt), hit):
            self.tokens[seq] = list(prompt)
            self.computed[seq] = len(hit[0]) * self.BLOCK_SIZE

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def compute(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.tokens)))
        self.computed[seq] = len(self.tokens[seq])
        self.kv.cache_full_blocks(seq, self.tokens[seq], self.computed[seq])

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), token=st.integers(0, 2))
    def append(self, data: st.DataObject, token: int) -> None:
        seq = data.draw(st.sampled_from(sorted(self.tokens)))
        if self.computed[seq] == len(self.tokens[seq]) and self.kv.allocate(seq, len(self.tokens[seq]) + 1):
            self.tokens[seq].append(token)

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def finish_or_abort(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.tokens)))
        self.kv.free(seq)
        del self.tokens[seq], self.computed[seq]

    @invariant()
    def reference_counts_match_the_tables(self) -> None:
        held = Counter(b for seq in self.tokens for b in self.kv.block_table(seq))
        pool = self.kv.pool
        for block in range(pool.num_blocks):
            assert pool.ref_counts[block] == held[block]
            assert (block in pool.free_queue) == (held[block] == 0)
        assert pool.num_free + self.kv.num_used == pool.num_blocks

    @invariant()
    def tables_hold_distinct_blocks_covering_their_tokens(self) -> None:
        for seq, tokens in self.tokens.items():
            table = self.kv.block_table(seq)
            assert len(set(table)) == len(table)
            assert len(table) == self.kv.blocks_for(len(tokens))

    @invariant()
    def a_shared_block_holds_the_same_tokens_for_every_holder(self) -> None:
        content: dict[int, tuple[int, tuple[int, ...]]] = {}
        bs = self.BLOCK_SIZE
        for seq, tokens in self.tokens.items():
            for i, block in enumerate(self.kv.block_table(seq)):
                if (i + 1) * bs <= self.computed[seq]:
                    seen = content.setdefault(block, (i, tuple(tokens[: (i + 1) * bs])))
                    assert seen == (i, tuple(tokens[: (i + 1) * bs]))

    @invariant()
    def the_cache_map_points_at_blocks_with_that_hash(self) -> None:
        pool = self.kv.pool
        for block_hash, block in pool.cached.items():
            assert pool.block_hash[block] == block_hash

    @invariant()
    def a_held_block_with_a_hash_holds_the_tokens_that_hash_names(self) -> None:
        bs = self.BLOCK_SIZE
        for seq, tokens in self.tokens.items():
            parent = ROOT_HASH
            for i, block in enumerate(self.kv.block_table(seq)[: self.computed[seq] // bs]):
                parent = hash_block_tokens(parent, tokens[i * bs : (i + 1) * bs])
                assert self.kv.pool.block_hash[block] in (None, parent)


TestBlockManagerMachine = BlockManagerMachine.TestCase
TestBlockManagerMachine.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, database=None
)
