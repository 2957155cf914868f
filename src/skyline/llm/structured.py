"""Constrained decoding: JSON (``response_format: json_object``) and JSON schemas, token by token.

Three pieces, each built once and shared:

- `TokenVocabulary` (one per tokenizer): the bytes of every token, as a trie of their distinct prefixes.
- `TokenAutomaton` (one per schema and vocabulary): the byte-level recognizer of `structured_grammar`,
  made deterministic on the fly. Each set of parser configurations reached so far is interned as a
  state number, and ``table[state, byte]`` (filled lazily) is the state that byte leads to. The tokens
  allowed in a state are found by walking the *whole* trie at once through the table, one level at a
  time, with numpy: about 100,000 table look-ups, a millisecond or so, cached per state.
- `JsonConstraint` (one per request): the engine's `TokenConstraint`. It allows a token only if the
  text can still be completed within the tokens left (each state knows the fewest bytes to a complete
  value, and every byte is a token of its own in a byte-level vocabulary), and the end-of-sequence token
  only when the text is a complete value. So a constrained request ends with JSON that parses.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import numpy as np
import torch

from skyline.errors import ConfigError
from skyline.llm.structured_grammar import BIG, Config, can_end, distance, initial, is_final, step
from skyline.llm.structured_schema import FREE_OBJECT, ArrayNode, Node, ObjectNode, StringNode, compile_schema

__all__ = [
    "JsonConstraint",
    "TokenAutomaton",
    "TokenVocabulary",
    "json_constraint",
    "response_format_grammar",
]

MAX_SCHEMA_CHARS = 64 * 1024
_NEVER = 65535  # a token's distance when it is not allowed (masks are kept as uint16)
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@cache
def _byte_level_chars() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: each byte is written as one printable character; char → byte."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:  # the unprintable bytes take the code points from 256 on, in byte order
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def _piece_bytes(piece: str, byte_level: bool) -> bytes:
    if byte_level:
        table = _byte_level_chars()
        if all(c in table for c in piece):
            return bytes(table[c] for c in piece)
        return piece.encode()  # an added token written as plain text
    fallback = _BYTE_FALLBACK.match(piece)
    if fallback:
        return bytes([int(fallback.group(1), 16)])
    return piece.replace("\u2581", " ").encode()  # SentencePiece writes a space as U+2581


class TokenVocabulary:
    """The bytes of every token id of a tokenizer, arranged as a trie for the mask walk.

    The trie's nodes are the distinct token prefixes (about 100,000 for a 49,152-token vocabulary whose
    tokens hold 330,000 bytes), numbered level by level: ``levels[i]`` holds, for the nodes of depth
    ``i + 1``, the index of each node's parent within depth ``i`` and the byte that leads to it.
    ``token_node[t]`` is the global number of token ``t``'s last node (-1 for tokens without bytes).
    """

    def __init__(self, token_bytes: list[bytes]) -> None:
        self.size = len(token_bytes)
        self.token_bytes = token_bytes
        depth = max((len(b) for b in token_bytes), default=0)
        index: list[dict[bytes, int]] = [{b"": 0}] + [{} for _ in range(depth)]
        parents: list[list[int]] = [[] for _ in range(depth)]
        for data in token_bytes:
            for end in range(1, len(data) + 1):
                level = index[end]
                if data[:end] not in level:
                    level[data[:end]] = len(level)
                    parents[end - 1].append(index[end - 1][data[: end - 1]])
        self.levels: list[tuple[np.ndarray, np.ndarray]] = [
            (
                np.array(parents[i], dtype=np.int64),
                np.frombuffer(bytes(p[-1] for p in index[i + 1]), np.uint8),
            )
            for i in range(depth)
        ]
        offsets = np.cumsum([0] + [len(index[i + 1]) for i in range(depth)])
        self.nodes = int(offsets[-1])
        self.token_node = np.array(
            [offsets[len(b) - 1] + index[len(b)][b] if b else -1 for b in token_bytes], dtype=np.int64
        )
        self.missing_single_bytes = frozenset(range(256)) - {b[0] for b in index[1]} if depth else frozenset()

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> TokenVocabulary:
        """Read the vocabulary of a Hugging Face (fast) tokenizer: byte-level BPE or SentencePiece."""
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        byte_level = "ByteLevel" in json.dumps(spec.get("decoder"))
        size = len(tokenizer)
        special = set(tokenizer.all_special_ids)
        special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        token_bytes = [
            b"" if i in special or piece is None else _piece_bytes(piece, byte_level)
            for i, piece in enumerate(pieces)
        ]
        return cls(token_bytes)


_VOCABULARIES: dict[int, tuple[Any, TokenVocabulary]] = {}
_LOCK = threading.Lock()


def vocabulary_of(tokenizer: Any) -> TokenVocabulary:
    """The tokenizer's `TokenVocabulary`, built on first use and kept (one per tokenizer object)."""
    with _LOCK:
        entry = _VOCABULARIES.get(id(tokenizer))
        if entry is None or entry[0] is not tokenizer:
            entry = _VOCABULARIES[id(tokenizer)] = (tokenizer, TokenVocabulary.from_tokenizer(tokenizer))
        return entry[1]


class TokenAutomaton:
    """A schema's recognizer over a vocabulary, made deterministic lazily (see the module docstring).

    State 0 is dead (every byte leads back to it). Only the engine thread walks it: it is not locked.
    """

    def __init__(self, vocabulary: TokenVocabulary, root: Node) -> None:
        self.vocabulary = vocabulary
        self._sets: list[frozenset[Config]] = [frozenset()]
        self._ids: dict[frozenset[Config], int] = {frozenset(): 0}
        self._table = np.full((64, 256), -1, dtype=np.int32)
        self._table[0] = 0
        self._dist = np.full(64, _NEVER, dtype=np.int64)
        self._end: list[bool] = [False]
        self._final: list[bool] = [False]
        self._masks: OrderedDict[int, np.ndarray] = OrderedDict()
        self.initial = self._intern(frozenset({initial(root)}))
        # An object, array or string ends with its last byte (the request stops there); a number or a
        # literal only ends when the model picks EOS, which costs one more token.
        self.end_tokens = 0 if isinstance(root, ObjectNode | ArrayNode | StringNode) else 1

    def _intern(self, configs: frozenset[Config]) -> int:
        found = self._ids.get(configs)
        if found is not None:
            return found
        state = len(self._sets)
        if state == len(self._table):  # grow by doubling
            self._table = np.concatenate([self._table, np.full_like(self._table, -1)])
            self._dist = np.concatenate([self._dist, np.full_like(self._dist, _NEVER)])
        self._sets.append(configs)
        self._ids[configs] = state
        self._dist[state] = min(min(distance(c) for c in configs), BIG)  # dead state: _NEVER
        self._end.append(any(can_end(c) for c in configs))
        self._final.append(all(is_final(c) for c in configs))
        return state

    def _fill(self, pairs: Iterable[int]) -> None:
        """Compute ``table[state, byte]`` for each ``state * 256 + byte`` in ``pairs``."""
        for pair in pairs:
            state, byte = divmod(int(pair), 256)
            moved = frozenset(c2 for c in self._sets[state] for c2 in step(c, byte))
            self._table[state, byte] = self._intern(moved)

    def distance(self, state: int) -> int:
        """The fewest bytes that complete the text from ``state``."""
        return int(self._dist[state])

    def can_end(self, state: int) -> bool:
        return self._end[state]

    def is_final(self, state: int) -> bool:
        return self._final[state]

    def walk(self, state: int, token_id: int) -> int:
        """The state after the bytes of ``token_id`` (0 when they are not allowed)."""
        for byte in self.vocabulary.token_bytes[token_id]:
            nxt = int(self._table[state, byte])
            if nxt < 0:
                self._fill([state * 256 + byte])
                nxt = int(self._table[state, byte])
            state = nxt
        return state if self.vocabulary.token_bytes[token_id] else 0

    def token_distances(self, state: int) -> np.ndarray:
        """For every token id, `distance` after appending it in ``state``, as uint16 (65535: not allowed;
        larger distances read 65534)."""
        cached = self._masks.get(state)
        if cached is not None:
            self._masks.move_to_end(state)
            return cached
        vocab = self.vocabulary
        reached = np.empty(vocab.nodes, dtype=np.int64)  # the state at every trie node, level by level
        previous, start = np.array([state], dtype=np.int64), 0
        for parents, data in vocab.levels:
            pairs = previous[parents] * 256 + data
            moved = self._table.ravel()[pairs]
            missing = moved < 0
            if missing.any():
                self._fill(np.unique(pairs[missing]))
                moved = self._table.ravel()[pairs]
            reached[start : start + len(moved)] = moved
            previous, start = moved, start + len(moved)
        result = np.full(vocab.size, _NEVER, dtype=np.uint16)
        has_bytes = vocab.token_node >= 0
        final = reached[vocab.token_node[has_bytes]]
        result[has_bytes] = np.where(final == 0, _NEVER, np.minimum(self._dist[final], _NEVER - 1))
        self._masks[state] = result
        if len(self._masks) > 64:  # 6 MB of masks per schema at most
            self._masks.popitem(last=False)
        return result


class JsonConstraint:
    """The `TokenConstraint` of one request: JSON text under the automaton's schema within ``max_tokens``;
    ``eos_ids`` (the engine's end-of-sequence tokens) are allowed once the text is a complete value."""

    def __init__(self, automaton: TokenAutomaton, *, max_tokens: int, eos_ids: Iterable[int]) -> None:
        need = automaton.distance(automaton.initial) + automaton.end_tokens
        if need > max_tokens:
            raise ConfigError(
                f"max_tokens is {max_tokens}, but the shortest JSON this response_format allows takes "
                f"{need} tokens; raise max_tokens"
            )
        self._automaton = automaton
        self._eos = sorted(set(eos_ids))
        self._state = automaton.initial
        self._left = max_tokens
        self._ended = False

    def allowed(self) -> torch.Tensor:
        """Tokens that keep the text completable within the tokens left; EOS once it is complete."""
        automaton = self._automaton
        # the bytes still needed (one token each at worst) fit in the tokens left after this one
        mask = automaton.token_distances(self._state) < min(self._left - automaton.end_tokens, _NEVER)
        if automaton.can_end(self._state) or not mask.any():
            mask[self._eos] = True
        return torch.from_numpy(mask)

    def advance(self, token_id: int) -> None:
        """Consume the chosen token; `ConfigError` if the mask did not allow it."""
        self._left -= 1
        if token_id in self._eos:  # engines end the request on EOS themselves; this is for the others
            self._ended = True
            return
        state = self._automaton.walk(self._state, token_id)
        if state == 0:
            raise ConfigError(f"token {token_id} does not continue the JSON text; the mask was not applied")
        self._state = state

    def is_complete(self) -> bool:
        """True once the value is complete and nothing may follow it (or the model ended it)."""
        return self._ended or self._automaton.is_final(self._state)


_AUTOMATA: OrderedDict[tuple[int, str], TokenAutomaton] = OrderedDict()


def response_format_grammar(response_format: Mapping[str, Any] | None) -> tuple[str, Node] | None:
    """(cache key, grammar) of an OpenAI ``response_format``; None for plain text. `ConfigError` if bad."""
    if response_format is None or response_format.get("type", "text") == "text":
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json_object", FREE_OBJECT
    if kind != "json_schema":
        raise ConfigError(f"response_format type {kind!r} is unknown; use text, json_object or json_schema")
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise ConfigError('response_format json_schema needs {"name": ..., "schema": {...}}')
    schema = spec.get("schema", {})
    # Key order matters (properties are generated in order), so the cache key keeps it.
    key = json.dumps(schema, separators=(",", ":"))
    if len(key) > MAX_SCHEMA_CHARS:
        raise ConfigError(f"response_format json_schema is {len(key)} characters; at most {MAX_SCHEMA_CHARS}")
    return key, compile_schema(schema)


def json_constraint(
    tokenizer: Any, grammar: tuple[str, Node], *, max_tokens: int, eos_ids: Iterable[int]
) -> JsonConstraint:
    """A fresh constraint for one request; the automaton is shared by requests with the same schema."""
    vocabulary = vocabulary_of(tokenizer)
    key = (id(vocabulary), grammar[0])
    with _LOCK:
        automaton = _AUTOMATA.get(key)
        if automaton is None:
            automaton = _AUTOMATA[key] = TokenAutomaton(vocabulary, grammar[1])
            if len(_AUTOMATA) > 32:
                _AUTOMATA.popitem(last=False)
        _AUTOMATA.move_to_end(key)
    return JsonConstraint(automaton, max_tokens=max_tokens, eos_ids=eos_ids)
