"""A byte-level pushdown recognizer of JSON texts under a compiled schema (`structured_schema` nodes).

A *configuration* is the parser's whole state: a tuple of frames, the innermost value last. Each frame is
a plain tuple ``(kind, node, ...)``, so configurations hash and compare cheaply and the token automaton
(:mod:`skyline.llm.structured`) can intern them. `step` feeds one byte and returns the configurations it
may lead to (several where a union is ambiguous, none where the byte is not allowed). A container frame
is advanced to "after the value" when its child is pushed, so a finished child just pops; a number or a
literal only knows it has finished when the next byte does not continue it, and then hands that byte on.

`distance` is the fewest bytes that complete the text from a configuration: the decoder keeps it within
the tokens left, so that a constrained request always ends with parseable JSON.

Whitespace is allowed (at most `MAX_WS` bytes in a row) after ``{``, ``[``, ``:`` and ``,`` and before
``}`` and ``]``; not before the top-level value nor after it, so the request ends right after the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skyline.llm.structured_schema import (
    AnyNode,
    ArrayNode,
    LiteralNode,
    Node,
    NumberNode,
    ObjectNode,
    StringNode,
    UnionNode,
)

__all__ = ["Config", "can_end", "distance", "initial", "is_final", "step"]

Frame = tuple[Any, ...]  # (kind, node, fields...) — see the frame layouts below
Config = tuple[Frame, ...]

MAX_WS = 20  # pretty-printed JSON indents 2 bytes per level: 9 levels deep
MAX_DIGITS = 16  # digits of an integer part or a fraction; exponents take at most 3
BIG = 1 << 40
_WS = frozenset(b" \n\t")
_QUOTE, _BACKSLASH, _COMMA, _COLON = 0x22, 0x5C, 0x2C, 0x3A
_OPEN_OBJ, _CLOSE_OBJ, _OPEN_ARR, _CLOSE_ARR = 0x7B, 0x7D, 0x5B, 0x5D
_DIGITS = frozenset(range(0x30, 0x3A))
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrt')

# Frame kinds and layouts.
TOP, OBJ, ARR, STR, NUM, LIT = range(6)
# (TOP, node, done)
# (OBJ, node, phase, next_index, ws, key_candidates, key_pos, value_index)   value_index -1: an extra key
O_OPEN, O_KEY, O_COLON, O_AFTER_COLON, O_AFTER_VALUE, O_AFTER_COMMA = range(6)
# (ARR, node, phase, count, ws)
A_OPEN, A_AFTER_VALUE, A_AFTER_COMMA = range(3)
# (STR, node, phase, chars, pending, low, high)   pending: bytes still to come in this character;
# S_HEX: ``low`` is 1 after a first hex digit d/D, 2 once the escape is a high surrogate (\uD800-\uDBFF),
# which must be followed by its low surrogate (S_PAIR: ``\u`` + DC00-DFFF) — a pair is one character.
S_BODY, S_ESC, S_HEX, S_UTF8, S_PAIR = range(5)
_PAIR = (b"\\", b"u", b"dD", b"cdefCDEF", b"0123456789abcdefABCDEF", b"0123456789abcdefABCDEF")
# (NUM, node, phase, digits)
N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP = range(8)
_NUM_DONE = frozenset({N_ZERO, N_INT, N_FRAC, N_EXP})
_NUM_REST = (1, 0, 0, 1, 0, 1, 1, 0)  # bytes a number needs to be complete, by phase
# (LIT, node, candidates, pos)

_KEY = StringNode()  # an extra (additionalProperties) key


def initial(node: Node) -> Config:
    """The configuration before the first byte of a text valid under ``node``."""
    return ((TOP, node, False),)


def begin(rest: Config, node: Node, byte: int) -> list[Config]:
    """Start a value of ``node`` with ``byte`` on top of ``rest`` (whose top already expects what follows)."""
    if isinstance(node, StringNode):
        return [(*rest, (STR, node, S_BODY, 0, 0, 0, 0))] if byte == _QUOTE else []
    if isinstance(node, NumberNode):
        if byte == 0x2D:
            return [(*rest, (NUM, node, N_MINUS, 0))]
        if byte in _DIGITS:
            return [(*rest, (NUM, node, N_ZERO, 0) if byte == 0x30 else (NUM, node, N_INT, 1))]
        return []
    if isinstance(node, LiteralNode):
        texts = tuple(t for t in node.texts if t[0] == byte)
        return [(*rest, (LIT, node, texts, 1))] if texts else []
    if isinstance(node, ObjectNode):
        return [(*rest, (OBJ, node, O_OPEN, 0, 0, (), 0, -1))] if byte == _OPEN_OBJ else []
    if isinstance(node, ArrayNode):
        return [(*rest, (ARR, node, A_OPEN, 0, 0))] if byte == _OPEN_ARR else []
    if isinstance(node, UnionNode | AnyNode):
        return [c for alt in node.alternatives for c in begin(rest, alt, byte)]
    raise TypeError(f"unknown grammar node {node!r}")


def _top(rest: Config, f: Frame, byte: int) -> list[Config]:
    return [] if f[2] else begin((*rest, (TOP, f[1], True)), f[1], byte)


def _obj_key_start(rest: Config, node: ObjectNode, nxt: int) -> list[Config]:
    out: list[Config] = []
    if node.candidates[nxt]:
        out.append((*rest, (OBJ, node, O_KEY, nxt, 0, node.candidates[nxt], 1, -1)))
    if node.additional is not None:
        out.append((*rest, (OBJ, node, O_COLON, nxt, 0, (), 0, -1), (STR, _KEY, S_BODY, 0, 0, 0, 0)))
    return out


def _obj_key(rest: Config, f: Frame, byte: int) -> list[Config]:
    node, cands, pos = f[1], f[5], f[6]
    keys = node.keys
    matched = tuple(j for j in cands if len(keys[j]) > pos and keys[j][pos] == byte)
    for j in matched:
        if len(keys[j]) == pos + 1:  # a key ends only at its closing quote, so at most one ends here
            return [(*rest, (OBJ, node, O_COLON, j + 1, 0, (), 0, j))]
    return [(*rest, (OBJ, node, O_KEY, f[3], 0, matched, pos + 1, -1))] if matched else []


def _obj(rest: Config, f: Frame, byte: int) -> list[Config]:
    _, node, phase, nxt, ws, _, _, value = f
    if phase == O_KEY:
        return _obj_key(rest, f, byte)
    if phase == O_COLON:
        return [(*rest, (OBJ, node, O_AFTER_COLON, nxt, 0, (), 0, value))] if byte == _COLON else []
    if byte in _WS:
        return [(*rest, (OBJ, node, phase, nxt, ws + 1, (), 0, value))] if ws < MAX_WS else []
    if phase == O_AFTER_COLON:
        child = node.values[value] if value >= 0 else node.additional
        return begin((*rest, (OBJ, node, O_AFTER_VALUE, nxt, 0, (), 0, -1)), child, byte)
    if byte == _QUOTE and phase in (O_OPEN, O_AFTER_COMMA):
        return _obj_key_start(rest, node, nxt)
    if byte == _CLOSE_OBJ and phase in (O_OPEN, O_AFTER_VALUE) and node.can_close[nxt]:
        return [rest]
    more = bool(node.candidates[nxt]) or node.additional is not None
    if byte == _COMMA and phase == O_AFTER_VALUE and more:
        return [(*rest, (OBJ, node, O_AFTER_COMMA, nxt, 0, (), 0, -1))]
    return []


def _arr(rest: Config, f: Frame, byte: int) -> list[Config]:
    _, node, phase, count, ws = f
    if byte in _WS:
        return [(*rest, (ARR, node, phase, count, ws + 1))] if ws < MAX_WS else []
    room = node.max_items is None or count < node.max_items
    if phase == A_AFTER_VALUE:
        if byte == _COMMA and room:
            return [(*rest, (ARR, node, A_AFTER_COMMA, count, 0))]
        return [rest] if byte == _CLOSE_ARR and count >= node.min_items else []
    if phase == A_OPEN and byte == _CLOSE_ARR:
        return [rest] if node.min_items == 0 else []
    return begin((*rest, (ARR, node, A_AFTER_VALUE, count + 1, 0)), node.items, byte) if room else []


def _utf8_lead(byte: int) -> tuple[int, int, int] | None:
    """(continuation bytes, low, high of the next byte) for a UTF-8 lead byte; None if it is not one."""
    if 0xC2 <= byte <= 0xDF:
        return 1, 0x80, 0xBF
    if 0xE0 <= byte <= 0xEF:
        return 2, 0xA0 if byte == 0xE0 else 0x80, 0x9F if byte == 0xED else 0xBF  # no overlongs, surrogates
    if 0xF0 <= byte <= 0xF4:
        return 3, 0x90 if byte == 0xF0 else 0x80, 0x8F if byte == 0xF4 else 0xBF
    return None


def _str(rest: Config, f: Frame, byte: int) -> list[Config]:
    _, node, phase, chars, pending, low, high = f
    counted = node.min_len > 0 or node.max_len is not None  # count characters only where it matters
    after = chars + 1 if counted else 0
    if phase == S_BODY:
        return _str_body(rest, node, chars, after, byte)
    if phase == S_ESC:
        if byte == 0x75:  # \uXXXX
            return [(*rest, (STR, node, S_HEX, chars, 4, 0, 0))]
        return [(*rest, (STR, node, S_BODY, after, 0, 0, 0))] if byte in _ESCAPES else []
    if phase == S_HEX:
        return _hex(rest, f, byte, after)
    ok = byte in _PAIR[6 - pending] if phase == S_PAIR else low <= byte <= high
    if not ok:
        return []
    if pending == 1:
        return [(*rest, (STR, node, S_BODY, after, 0, 0, 0))]
    return [(*rest, (STR, node, phase, chars, pending - 1, 0x80, 0xBF))]


def _str_body(rest: Config, node: StringNode, chars: int, after: int, byte: int) -> list[Config]:
    if byte == _QUOTE:
        return [rest] if chars >= node.min_len else []
    if node.max_len is not None and chars >= node.max_len:
        return []
    if byte == _BACKSLASH:
        return [(*rest, (STR, node, S_ESC, chars, 0, 0, 0))]
    if 0x20 <= byte < 0x80:
        return [(*rest, (STR, node, S_BODY, after, 0, 0, 0))]
    lead = _utf8_lead(byte)
    return [(*rest, (STR, node, S_UTF8, chars, *lead))] if lead else []


def _hex(rest: Config, f: Frame, byte: int, after: int) -> list[Config]:
    _, node, _, chars, pending, surrogate, _ = f
    if byte not in _HEX:
        return []
    if pending == 4:
        surrogate = int(byte in b"dD")
    elif pending == 3:
        surrogate = 2 if surrogate == 1 and byte in b"89abAB" else 0
    if pending > 1:
        return [(*rest, (STR, node, S_HEX, chars, pending - 1, surrogate, 0))]
    if surrogate == 2:
        return [(*rest, (STR, node, S_PAIR, chars, 6, 0, 0))]
    return [(*rest, (STR, node, S_BODY, after, 0, 0, 0))]


def _num(rest: Config, f: Frame, byte: int) -> list[Config]:
    _, node, phase, digits = f
    digit = byte in _DIGITS
    if phase in (N_MINUS, N_DOT, N_E, N_ESIGN):
        if phase == N_E and byte in (0x2B, 0x2D):
            return [(*rest, (NUM, node, N_ESIGN, 0))]
        if not digit:
            return []
        nxt = {N_MINUS: N_ZERO if byte == 0x30 else N_INT, N_DOT: N_FRAC}.get(phase, N_EXP)
        return [(*rest, (NUM, node, nxt, 1))]
    limit = 3 if phase == N_EXP else MAX_DIGITS
    if digit and phase != N_ZERO and digits < limit:
        return [(*rest, (NUM, node, phase, digits + 1))]
    if not node.integer and phase in (N_ZERO, N_INT) and byte == 0x2E:
        return [(*rest, (NUM, node, N_DOT, 0))]
    if not node.integer and phase != N_EXP and byte in (0x65, 0x45):
        return [(*rest, (NUM, node, N_E, 0))]
    return step(rest, byte)  # the number has ended: the byte belongs to what encloses it


def _lit(rest: Config, f: Frame, byte: int) -> list[Config]:
    _, node, texts, pos = f
    matched = tuple(t for t in texts if len(t) > pos and t[pos] == byte)
    if matched:
        return [(*rest, (LIT, node, matched, pos + 1))]
    return step(rest, byte) if any(len(t) == pos for t in texts) else []


_STEP: tuple[Callable[[Config, Frame, int], list[Config]], ...] = (_top, _obj, _arr, _str, _num, _lit)


def step(config: Config, byte: int) -> list[Config]:
    """The configurations ``config`` may move to on ``byte`` (empty: the byte is not allowed)."""
    top = config[-1]
    result: list[Config] = _STEP[top[0]](config[:-1], top, byte)
    return result


def _finished(frame: Frame) -> bool:
    """A number or literal that may end here (the next byte decides whether it goes on)."""
    if frame[0] == NUM:
        return frame[2] in _NUM_DONE
    return frame[0] == LIT and any(len(t) == frame[3] for t in frame[2])


def can_end(config: Config) -> bool:
    """True when the text so far is a complete value (the request may end here)."""
    while _finished(config[-1]):
        config = config[:-1]
    return config[-1][0] == TOP and bool(config[-1][2])


def is_final(config: Config) -> bool:
    """True when the text is complete and no byte may follow."""
    return len(config) == 1 and bool(config[0][2])


def _obj_rest(f: Frame) -> int:
    _, node, phase, nxt, _, cands, pos, value = f
    if phase == O_KEY:
        return int(min(node.key_cost(j) for j in cands)) - int(pos)
    if phase in (O_COLON, O_AFTER_COLON):
        child = node.values[value] if value >= 0 else node.additional
        return int((phase == O_COLON) + child.min_bytes + node.after[nxt])
    if phase == O_AFTER_VALUE:
        return int(node.after[nxt])
    keys = [node.key_cost(j) for j in node.candidates[nxt]]
    if node.additional is not None:
        keys.append(node.free_key_cost(nxt))
    first_key = min(keys, default=BIG)
    return int(min(first_key, 1 if phase == O_OPEN and node.can_close[nxt] else BIG))


def _frame_rest(f: Frame) -> int:
    kind = f[0]
    if kind == TOP:
        return 0 if f[2] else int(f[1].min_bytes)
    if kind == OBJ:
        return _obj_rest(f)
    if kind == ARR:
        node, phase, count = f[1], f[2], f[3]
        if phase == A_AFTER_COMMA:
            return int(node.items.min_bytes + node.rest_after(count + 1))
        return int(node.rest_after(count))
    if kind == STR:
        node, phase, chars, pending = f[1], f[2], f[3], f[4]
        if phase == S_BODY:
            return int(max(0, node.min_len - chars) + 1)
        current = 1 if phase == S_ESC else pending  # bytes that finish the current character
        if phase == S_HEX and f[5] == 2:
            current += len(_PAIR)  # a high surrogate needs its low one
        return int(current + max(0, node.min_len - chars - 1) + 1)
    if kind == NUM:
        return _NUM_REST[f[2]]
    return int(min(len(t) - f[3] for t in f[2]))


def distance(config: Config) -> int:
    """The fewest bytes that turn the text so far into a complete value."""
    return sum(_frame_rest(f) for f in config)
