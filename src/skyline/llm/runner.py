"""From a scheduled step to the model's inputs: token rows, positions, cache slots, gathers and masks.

Rows are ordered decode group first (every sequence computing exactly one token: a query of length one),
then one chunk per sequence computing several prompt tokens. Index tensors are built for the whole step
at once from a padded block-table matrix, so the per-layer work has no Python loop over sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from skyline.llm.block_manager import KVCacheManager
from skyline.llm.model import DecodeGroup, PagedDecoder, PrefillChunk, StepInputs
from skyline.llm.sequence import Sequence

__all__ = ["ModelRunner", "StepResult"]


@dataclass(slots=True)
class StepResult:
    logits: torch.Tensor  # [S, vocab]
    sampling: list[Sequence]  # row i of logits belongs to sampling[i]


class ModelRunner:
    """Runs one step of the decoder for the scheduled sequences."""

    def __init__(self, decoder: PagedDecoder, kv: KVCacheManager) -> None:
        self.decoder = decoder
        self.kv = kv
        self.block_size = kv.block_size

    def run(self, scheduled: list[tuple[Sequence, int]]) -> StepResult:
        """Compute the scheduled tokens; logits for the sequences whose last computed token ends them."""
        ordered = [e for e in scheduled if e[1] == 1] + [e for e in scheduled if e[1] > 1]
        inputs, sampling = self.inputs(ordered)
        return StepResult(logits=self.decoder.forward(inputs), sampling=sampling)

    def inputs(self, ordered: list[tuple[Sequence, int]]) -> tuple[StepInputs, list[Sequence]]:
        """The model inputs for (sequence, new tokens) pairs, decode group first, and the sequences sampled."""
        bs = self.block_size
        tables = [self.kv.block_table(seq.request_id) for seq, _ in ordered]
        width = max(len(t) for t in tables)
        table = torch.tensor([t + [self.decoder.pad_block] * (width - len(t)) for t in tables])
        ids: list[int] = []
        seq_rows: list[int] = []
        starts: list[int] = []
        logits_rows: list[int] = []
        sampling: list[Sequence] = []
        for i, (seq, n) in enumerate(ordered):
            start = seq.num_computed
            starts.extend(range(start, start + n))
            ids.extend(seq.token_ids[start : start + n])
            seq_rows.extend([i] * n)
            if start + n == len(seq.token_ids):
                logits_rows.append(len(ids) - 1)
                sampling.append(seq)
        positions = torch.tensor(starts)
        rows = torch.tensor(seq_rows)
        slots = table[rows, positions // bs] * bs + positions % bs
        num_decode = sum(1 for _, n in ordered if n == 1)
        inputs = StepInputs(
            input_ids=torch.tensor(ids),
            positions=positions,
            slots=slots,
            decode=self._decode_group(ordered[:num_decode], table[:num_decode]) if num_decode else None,
            prefills=self._prefill_chunks(ordered, table, num_decode),
            logits_rows=torch.tensor(logits_rows, dtype=torch.long),
        )
        return inputs, sampling

    def _slot_grid(self, table: torch.Tensor, length: int) -> torch.Tensor:
        """[rows, length] cache slots of positions 0..length-1 of each row's block table."""
        bs = self.block_size
        blocks = -(-length // bs)
        grid = table[:, :blocks].unsqueeze(-1) * bs + torch.arange(bs)
        return grid.reshape(table.shape[0], -1)[:, :length]

    def _decode_group(self, group: list[tuple[Sequence, int]], table: torch.Tensor) -> DecodeGroup:
        lengths = [seq.num_computed + 1 for seq, _ in group]
        longest = max(lengths)
        mask = None
        if min(lengths) != longest:
            padded = torch.arange(longest).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
            mask = torch.zeros(padded.shape, dtype=self.decoder.kv_cache.dtype).masked_fill_(
                padded, -torch.inf
            )
            mask = mask.view(len(group), 1, 1, longest)
        return DecodeGroup(
            num_seqs=len(group),
            gather=self._slot_grid(table, longest).reshape(-1),
            context_len=longest,
            lengths=torch.tensor(lengths),
            mask=mask,
        )

    def _prefill_chunks(
        self, ordered: list[tuple[Sequence, int]], table: torch.Tensor, num_decode: int
    ) -> list[PrefillChunk]:
        chunks = []
        row = num_decode
        for i in range(num_decode, len(ordered)):
            seq, n = ordered[i]
            context = seq.num_computed + n
            mask = None
            if seq.num_computed:  # earlier tokens are cached: query i sees keys 0 .. num_computed + i
                mask = torch.arange(context).unsqueeze(0) <= torch.arange(
                    seq.num_computed, context
                ).unsqueeze(1)
            gather = self._slot_grid(table[i : i + 1], context).reshape(-1)
            chunks.append(PrefillChunk(start=row, num_tokens=n, gather=gather, mask=mask))
            row += n
        return chunks
