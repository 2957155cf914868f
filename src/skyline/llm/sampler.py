"""Choosing the next token of every sequence in a step, from its logits.

Greedy rows take the argmax. Sampled rows are divided by their temperature, cut to their top-k and
top-p, and drawn by the exponential race (``argmax(p / E)`` with ``E ~ Exp(1)`` is a draw from ``p``): a
seeded request draws its ``E`` from its own ``torch.Generator``, so its tokens depend on its seed and its
logits only, never on which requests share its batch. Before ``min_tokens`` the end-of-sequence and stop
tokens are masked out; a request's constraint masks every token its grammar does not allow. A constraint
that raises (or allows nothing) fails that request only.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import torch

from skyline.llm.sequence import Sequence

__all__ = ["SampleResult", "Sampler"]

SampleResult = int | BaseException  # a token id, or why this row could not be sampled


class Sampler:
    """Batched sampling with per-request parameters."""

    def __init__(self, *, eos_token_ids: Seq[int], vocab_size: int) -> None:
        self.eos_token_ids = tuple(eos_token_ids)
        self.vocab_size = vocab_size
        self.generator = torch.Generator().manual_seed(torch.seed())  # for requests without a seed

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, seqs: Seq[Sequence]) -> list[SampleResult]:
        """One token (or an error) per row of ``logits`` ``[S, vocab]``, row ``i`` belonging to ``seqs[i]``."""
        logits = logits[:, : self.vocab_size].float()
        failed: dict[int, BaseException] = {}
        self._mask(logits, seqs, failed)
        tokens = torch.argmax(logits, dim=-1)
        sampled = [i for i, s in enumerate(seqs) if not s.params.greedy and i not in failed]
        if sampled:
            rows = torch.tensor(sampled)
            tokens[rows] = self._draw(logits[rows], [seqs[i] for i in sampled])
        token_list = tokens.tolist()
        return [failed.get(i, token_list[i]) for i in range(len(seqs))]

    def _mask(self, logits: torch.Tensor, seqs: Seq[Sequence], failed: dict[int, BaseException]) -> None:
        """Apply min_tokens and constraint masks in place (per row; most rows have neither)."""
        for i, seq in enumerate(seqs):
            params = seq.params
            if seq.num_generated < params.min_tokens:
                banned = list(params.stop_token_ids) + ([] if params.ignore_eos else list(self.eos_token_ids))
                logits[i, banned] = -torch.inf
            if seq.constraint is None:
                continue
            try:
                allowed = seq.constraint.allowed()
                if allowed is not None:
                    allowed = allowed[: self.vocab_size]
                    if not bool(allowed.any()):
                        raise ValueError("the constraint allows no next token")
                    # A mask shorter than the logits (tokenizer smaller than the embedding) disallows the rest.
                    logits[i, : allowed.shape[0]].masked_fill_(~allowed, -torch.inf)
                    logits[i, allowed.shape[0] :] = -torch.inf
            except Exception as exc:  # a faulty constraint fails its own request, never the batch
                failed[i] = exc

    def _draw(self, logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
        temperature = torch.tensor([s.params.temperature for s in seqs]).unsqueeze(1)
        logits = logits / temperature
        top_k = [s.params.top_k for s in seqs]
        top_p = [s.params.top_p for s in seqs]
        if any(top_k) or any(p < 1 for p in top_p):
            logits = _top_k_top_p(logits, top_k, top_p)
        probs = torch.softmax(logits, dim=-1)
        noise = torch.empty_like(probs)
        shared = [i for i, s in enumerate(seqs) if s.generator is None]
        if shared:
            noise[shared] = torch.empty(len(shared), probs.shape[1]).exponential_(generator=self.generator)
        for i, s in enumerate(seqs):
            if s.generator is not None:
                noise[i].exponential_(generator=s.generator)
        # An exact 0 draw would divide a masked (zero) probability into NaN, which argmax would pick.
        return torch.argmax(probs / noise.clamp_(min=torch.finfo(noise.dtype).tiny), dim=-1)


def _top_k_top_p(logits: torch.Tensor, top_k: list[int], top_p: list[float]) -> torch.Tensor:
    """Set every logit outside a row's top-k (0 = all) and top-p nucleus to -inf."""
    vocab = logits.shape[1]
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(vocab).unsqueeze(0)
    k = torch.tensor([kk if kk > 0 else vocab for kk in top_k]).unsqueeze(1)
    sorted_logits = sorted_logits.masked_fill(ranks >= k, -torch.inf)
    probs = torch.softmax(sorted_logits, dim=-1)
    # Drop a token when the tokens ranked before it already hold top_p of the mass (the first stays).
    before = probs.cumsum(dim=-1) - probs
    sorted_logits = sorted_logits.masked_fill(before >= torch.tensor(top_p).unsqueeze(1), -torch.inf)
    return torch.full_like(logits, -torch.inf).scatter(1, order, sorted_logits)
