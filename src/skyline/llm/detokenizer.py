"""Incremental detokenization with stop strings.

Decoding one token at a time is wrong for many tokenizers: a character may span several byte-level
tokens, and SentencePiece tokens carry their leading space only in context. So each new token is decoded
together with a few tokens before it, and only text that is complete (no trailing U+FFFD replacement
character) is released (the offsets scheme of vLLM and text-generation-inference). Text that could still
grow into a stop string is held back until it cannot; a stop string found ends the text just before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["IncrementalDetokenizer"]

_CONTEXT_TOKENS = 5  # prompt tokens decoded before the first generated one, for its leading space


class IncrementalDetokenizer:
    """Text of one request's generated tokens, released piece by piece."""

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int], stop: Sequence[str] = ()) -> None:
        # The Rust tokenizer behind a fast Hugging Face tokenizer decodes without the Python wrapper.
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        self._decode = backend.decode if backend is not None else tokenizer.decode
        self._ids: list[int] = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)
        self._prefix_text = self._decode(self._ids, skip_special_tokens=True)
        self.stop = tuple(stop)
        self.text = ""  # all released-or-held text so far (without any stop string)
        self._emitted = 0  # characters of ``text`` already returned by ``take``
        self.stopped = False

    def add(self, token_id: int, *, check_stop: bool = True) -> None:
        """Append one generated token's text (possibly none yet, while a character is incomplete).

        ``check_stop`` False (before ``min_tokens``) lets stop strings pass as ordinary text.
        """
        self._ids.append(token_id)
        new_text = self._decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if len(new_text) > len(self._prefix_text) and not new_text.endswith("\ufffd"):
            before = len(self.text)
            self.text += new_text[len(self._prefix_text) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            self._prefix_text = self._decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
            if self.stop and check_stop:
                self._find_stop(before)

    def _find_stop(self, before: int) -> None:
        # A stop string may straddle the old and new text: search from len(stop) - 1 characters back.
        longest = max(len(s) for s in self.stop)
        start = max(0, before - longest + 1)
        found = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.stopped = True

    def take(self, *, final: bool = False) -> str:
        """The text not yet returned, minus a tail that could begin a stop string (unless ``final``)."""
        end = len(self.text) if final or self.stopped else len(self.text) - self._held_back()
        end = max(end, self._emitted)
        delta = self.text[self._emitted : end]
        self._emitted = end
        return delta

    def _held_back(self) -> int:
        """Length of the longest suffix of the text that is a proper prefix of a stop string."""
        held = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), held, -1):
                if self.text.endswith(s[:k]):
                    held = k
                    break
        return held
