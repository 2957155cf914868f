"""A request inside the engine: its tokens, how many of them are in the KV cache, and how it ended."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from skyline.llm.engine import FinishReason, GenerationRequest, SamplingParams, TokenConstraint

__all__ = ["Sequence", "SequenceStatus"]


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False, slots=True)
class Sequence:
    """The engine's state of one request.

    ``token_ids`` is the prompt followed by the generated tokens; ``num_computed`` counts the tokens whose
    keys and values are in the KV cache. A running sequence that has finished its prompt always has
    exactly one token not yet computed (the one it sampled last), which the next step feeds to the model.
    Preemption resets ``num_computed`` to 0: the sequence is recomputed from its tokens when readmitted.
    """

    request: GenerationRequest
    arrival: int  # admission order, the FIFO tie-break within a priority
    token_ids: list[int] = field(default_factory=list)
    num_computed: int = 0
    num_cached_prompt: int = 0  # prompt tokens served by the prefix cache at first admission
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: FinishReason | None = None
    error: str | None = None
    emitted_first: bool = False
    detokenizer: Any = None  # the incremental detokenizer (skyline.llm.detokenizer), set by the engine
    generator: Any = None  # torch.Generator for a seeded request

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.request.prompt_token_ids)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def constraint(self) -> TokenConstraint | None:
        return self.request.constraint

    @property
    def priority(self) -> int:
        return self.request.priority

    @property
    def sort_key(self) -> tuple[int, int]:
        """Scheduling order: lower priority value first, then first come, first served."""
        return (self.request.priority, self.arrival)

    @property
    def num_prompt(self) -> int:
        return len(self.request.prompt_token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - len(self.request.prompt_token_ids)

    @property
    def num_uncomputed(self) -> int:
        return len(self.token_ids) - self.num_computed

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def finish(self, reason: FinishReason, error: str | None = None) -> None:
        self.status = SequenceStatus.FINISHED
        self.finish_reason = reason
        self.error = error
