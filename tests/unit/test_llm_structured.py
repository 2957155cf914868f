"""Constrained JSON decoding: the schema compiler, the byte-level recognizer and the token-level constraint.

The recognizer is checked both ways against references: every value that hypothesis draws for a random
schema (serialized by the standard library) is accepted byte by byte (complete), and every text that a
random walk through the token masks produces parses with ``json.loads`` and validates with ``jsonschema``
within its token budget (sound). The vocabulary here is a small byte-level one (all 256 bytes plus
multi-byte JSON pieces, as BPE vocabularies have); the real tokenizer is exercised in the API tests.
"""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyline.errors import ConfigError
from skyline.llm.structured import JsonConstraint, TokenAutomaton, TokenVocabulary, response_format_grammar
from skyline.llm.structured_grammar import can_end, distance, initial, is_final, step
from skyline.llm.structured_schema import FREE_OBJECT, compile_schema

pytestmark = pytest.mark.unit

EOS = 0
_PIECES = [
    b'{"', b'":', b'",', b'"}', b'":"', b'", "', b'": ', b'true', b'false', b'null', b'name', b'age', b' "',
    b"12", b"3.5", b"-0", b"e+", b"\\n", b"\\u00e9", b"},{", b"[{", b"}]", b"[]", b"{}", b"\xc3\xa9", b"\xe2\x82",
    b"\xac", b"hello", b" world", b"  ", b"\n  ", b",\n", b'"a"', b'bb"', b"0.25", b"]}", b"}}",
]  # fmt: skip
VOCAB = TokenVocabulary([b"", *(bytes([b]) for b in range(256)), *_PIECES])


def _grammar(schema: Any) -> tuple[str, Any]:
    grammar = response_format_grammar({"type": "json_schema", "json_schema": {"name": "t", "schema": schema}})
    assert grammar is not None
    return grammar


def accepts(root: Any, text: bytes) -> bool:
    """Feed ``text`` to the recognizer; True when every byte is allowed and the text is complete."""
    configs = [initial(root)]
    for byte in text:
        configs = [c2 for c in configs for c2 in step(c, byte)]
        if not configs:
            return False
        assert min(distance(c) for c in configs) >= 0
    return any(can_end(c) for c in configs)


# ------------------------------------------------------------------ schemas and values (hypothesis)
# Keys and enum strings are generated in one spelling (json.dumps with ensure_ascii=False), so they are drawn
# from characters that every json.dumps spells the same way.
_CANONICAL = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
_NAMES = st.text(_CANONICAL, min_size=1, max_size=6)


def _leaf_schemas() -> st.SearchStrategy[dict[str, Any]]:
    bounded = st.integers(0, 4).flatmap(
        lambda low: st.builds(
            lambda high: {"type": "string", "minLength": low, "maxLength": high}, st.integers(low, 8)
        )
    )
    return st.one_of(
        st.just({"type": "string"}),
        bounded,
        st.sampled_from([{"type": "number"}, {"type": "integer"}, {"type": "boolean"}, {"type": "null"}]),
        st.lists(st.one_of(st.integers(-50, 50), st.text(_CANONICAL, max_size=4), st.booleans(), st.none()), min_size=1,
                 max_size=4, unique_by=json.dumps).map(lambda values: {"enum": values}),
        st.just({"type": ["integer", "null"]}),
    )  # fmt: skip


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def obj(props: dict[str, dict[str, Any]], required: list[bool], extra: bool) -> dict[str, Any]:
        names = list(props)
        schema = {
            "type": "object",
            "properties": props,
            "required": [n for n, r in zip(names, required, strict=False) if r],
        }
        return {**schema, "additionalProperties": True} if extra else schema

    objects = st.builds(
        obj, st.dictionaries(_NAMES, children, max_size=4), st.lists(st.booleans(), min_size=4, max_size=4),
        st.booleans(),
    )  # fmt: skip
    arrays = st.builds(
        lambda items, low, more: {"type": "array", "items": items, "minItems": low, "maxItems": low + more},
        children, st.integers(0, 2), st.integers(0, 3),
    )  # fmt: skip
    unions = st.lists(children, min_size=2, max_size=3).map(lambda options: {"anyOf": options})
    return st.one_of(objects, arrays, unions)


SCHEMAS = st.recursive(_leaf_schemas(), _extend, max_leaves=8)


def values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under ``schema`` (objects as ordered dicts in the schema's property order)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([values(s) for s in schema["anyOf"]])
    kind = schema["type"]
    if isinstance(kind, list):
        return st.one_of([values({"type": k}) for k in kind])
    if kind == "object":
        required = set(schema["required"])
        present = st.fixed_dictionaries({n: st.booleans() for n in schema["properties"]})
        chosen = present.flatmap(
            lambda keep: st.fixed_dictionaries(
                {n: values(s) for n, s in schema["properties"].items() if n in required or keep[n]}
            )
        )
        return chosen.map(lambda d: {n: d[n] for n in schema["properties"] if n in d})  # the schema's order
    if kind == "array":
        return st.lists(values(schema["items"]), min_size=schema["minItems"], max_size=schema["maxItems"])
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 8))
    leaves: dict[str, st.SearchStrategy[Any]] = {
        "integer": st.integers(-(10**15), 10**15),
        "number": st.one_of(st.integers(-999, 999), st.floats(-1e6, 1e6).map(lambda x: round(x, 6))),
        "boolean": st.booleans(),
        "null": st.none(),
    }
    return leaves[kind]


# ------------------------------------------------------------------ the recognizer is complete
@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), schema=SCHEMAS, compact=st.booleans(), ascii_only=st.booleans())
def test_every_valid_value_is_accepted(
    data: st.DataObject, schema: dict[str, Any], compact: bool, ascii_only: bool
) -> None:
    value = data.draw(values(schema))
    jsonschema.validate(value, schema)  # the reference agrees the value is valid
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(value, ensure_ascii=ascii_only, separators=separators).encode()
    if not compact and not ascii_only:
        text = json.dumps(value, ensure_ascii=False, indent=2).encode()
    assert accepts(compile_schema(schema), text), text


def test_texts_that_break_the_schema_are_refused() -> None:
    person = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}  # fmt: skip
    root = compile_schema(person)
    assert accepts(root, b'{"name":"Ada","age":36}')
    for bad in (b'{"name":"Ada"}', b'{"age":36,"name":"Ada"}', b'{"name":"Ada","age":3.5}', b'{"name":1,"age":2}',
                b'{"name":"Ada","age":36,"x":1}', b' {"name":"Ada","age":36}', b'{"name":"Ada","age":036}'):  # fmt: skip
        assert not accepts(root, bad), bad
    assert accepts(compile_schema({"enum": [1, 12]}), b"12") and accepts(
        compile_schema({"enum": [1, 12]}), b"1"
    )
    assert not accepts(compile_schema({"type": "string", "maxLength": 2}), '"été"'.encode())
    assert not accepts(compile_schema({"type": "string"}), b'"\xff"')  # not UTF-8
    assert not accepts(compile_schema({"type": "string"}), b'"\xed\xa0\x80"')  # an encoded surrogate
    assert not accepts(FREE_OBJECT, b"[1]") and accepts(FREE_OBJECT, b'{"a":[1,{"b":null}],"c":"d"}')


def test_the_text_ends_right_after_the_value() -> None:
    root = compile_schema({"type": "object", "properties": {}})
    config = step(step(initial(root), ord("{"))[0], ord("}"))[0]
    assert is_final(config) and can_end(config) and distance(config) == 0
    assert step(config, ord(" ")) == []


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize(
    ("schema", "word"),
    [
        ({"type": "string", "pattern": "^a$"}, "pattern"),
        ({"type": "string", "format": "date-time"}, "format"),
        ({"type": "integer", "minimum": 0}, "minimum"),
        ({"oneOf": [{"type": "string"}]}, "oneOf"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "'b'"),
        ({"type": "string", "minLength": 3, "maxLength": 2}, "maxLength"),
        ({"type": "date"}, "'date'"),
        (
            {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"},
            "recursive",
        ),
        ({"$ref": "#/$defs/missing"}, "missing"),
        ({"type": "string", "items": {"type": "string"}}, "items"),
        (False, "false"),
        ({"$defs": 5, "$ref": "#/$defs/x"}, "does not name"),
        ({"type": "object", "properties": {"a": {}}, "required": [["a"]]}, "only their names"),
        ({"type": "object", "properties": {f"p{i}": {} for i in range(300)}}, "at most 256 properties"),
        ({"enum": list(range(2000))}, "1 to 1024 values"),
        (_nested(40), "deeper than 32"),
        (
            {
                "$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(60)} | {"d60": {}},
                "$ref": "#/$defs/d0",
            },
            "deeper than 32",
        ),
    ],
)
def test_unsupported_schemas_are_refused_by_name(schema: Any, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        compile_schema(schema)


def test_refs_and_annotations_compile() -> None:
    schema = {
        "$defs": {"Pet": {"title": "Pet", "type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}},
                          "required": ["kind"], "additionalProperties": False}},
        "type": "object", "description": "an owner", "properties": {"pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}}},
        "required": ["pets"],
    }  # fmt: skip
    assert accepts(compile_schema(schema), b'{"pets":[{"kind":"cat"},{"kind":"dog"}]}')


# ------------------------------------------------------------------ the token constraint is sound
def _walk(constraint: JsonConstraint, rng: random.Random, budget: int) -> tuple[bytes, bool]:
    """Sample uniformly among the allowed tokens until EOS, completion or the budget; (text, ended)."""
    out = b""
    for _ in range(budget):
        allowed = np.flatnonzero(constraint.allowed().numpy())
        assert len(allowed) > 0
        token = int(rng.choice(list(allowed)))
        constraint.advance(token)
        if token == EOS:
            return out, True
        out += VOCAB.token_bytes[token]
        if constraint.is_complete():
            return out, True
    return out, False


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(schema=SCHEMAS, seed=st.integers(0, 2**32 - 1), slack=st.integers(0, 40))
def test_random_walks_through_the_masks_always_parse_and_validate(
    schema: dict[str, Any], seed: int, slack: int
) -> None:
    _, root = _grammar(schema)
    automaton = TokenAutomaton(VOCAB, root)
    budget = automaton.distance(automaton.initial) + automaton.end_tokens + slack
    text, ended = _walk(
        JsonConstraint(automaton, max_tokens=budget, eos_ids=[EOS]), random.Random(seed), budget
    )
    assert ended, f"no end within {budget} tokens: {text!r}"
    jsonschema.validate(json.loads(text.decode()), schema)


def test_json_object_mode_gives_an_object_and_the_budget_is_checked() -> None:
    automaton = TokenAutomaton(VOCAB, FREE_OBJECT)
    for seed in range(20):
        budget = 2 + seed
        text, ended = _walk(
            JsonConstraint(automaton, max_tokens=budget, eos_ids=[EOS]), random.Random(seed), budget
        )
        assert ended and isinstance(json.loads(text.decode()), dict)
    needs_ten = TokenAutomaton(VOCAB, compile_schema({"type": "string", "minLength": 8}))
    with pytest.raises(ConfigError, match="max_tokens"):
        JsonConstraint(needs_ten, max_tokens=9, eos_ids=[EOS])


def test_masks_allow_exactly_the_tokens_the_recognizer_accepts() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ok": {"type": "boolean"}},
        "required": ["ok"],
    }
    root = compile_schema(schema)
    automaton = TokenAutomaton(VOCAB, root)
    state, prefix = automaton.initial, b""
    for token in (b'{"', b"name", b'":"', b"\xc3\xa9", b'",', b' "'):
        distances = automaton.token_distances(state)
        for token_id, data in enumerate(VOCAB.token_bytes):
            configs = [initial(root)]
            for byte in prefix + data:
                configs = [c2 for c in configs for c2 in step(c, byte)]
            assert (distances[token_id] < 65535) == (bool(data) and bool(configs)), (prefix, data)
        state = automaton.walk(state, VOCAB.token_bytes.index(token))
        prefix += token
    assert response_format_grammar({"type": "text"}) is None
    with pytest.raises(ConfigError, match="unknown"):
        response_format_grammar({"type": "yaml"})
