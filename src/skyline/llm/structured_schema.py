"""JSON schemas compiled into grammar nodes for constrained decoding (the subset clients send).

Supported: ``type`` (one or a list of object, array, string, number, integer, boolean, null),
``properties`` / ``required`` / ``additionalProperties`` (false or absent: only the listed properties;
true or a schema: extra keys too), ``items`` / ``minItems`` / ``maxItems``, ``minLength`` / ``maxLength``,
``enum``, ``const``, ``anyOf``, ``$ref`` into ``$defs`` / ``definitions`` (not recursive), and the
annotations that do not constrain (``title``, ``description``, ``default``, ...). Anything else
(``pattern``, ``format``, ``minimum``, ``oneOf``, ...) is refused with a `ConfigError` naming the keyword:
a constraint that is silently ignored would let through output that the client's validator rejects.

Properties are generated in the order the schema lists them (as OpenAI's structured outputs do); an
optional property may be left out. Every node knows ``min_bytes``, the length of its shortest text,
which the decoder uses to always leave room to finish the value within ``max_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from skyline.errors import ConfigError

__all__ = [
    "ANY_VALUE",
    "FREE_OBJECT",
    "AnyNode",
    "ArrayNode",
    "LiteralNode",
    "Node",
    "NumberNode",
    "ObjectNode",
    "StringNode",
    "UnionNode",
    "compile_schema",
]

ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
     "readOnly", "writeOnly", "$defs", "definitions"}
)  # fmt: skip
_TYPE_KEYWORDS = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "string": frozenset({"minLength", "maxLength"}),
}
_GENERIC = frozenset({"type", "enum", "const", "anyOf", "$ref"})
MAX_FREE_DEPTH = 8  # nesting of free-form JSON (json_object mode and untyped values)
MAX_LENGTH_TRACKED = 4096  # maxLength above this is refused: every length is a parser state
# Bounds on what one request may ask the decoder to build (OpenAI's structured outputs have similar ones): a
# schema's cost is paid per new parser state on the engine's thread, so it must stay small.
MAX_DEPTH = 32  # nested schemas
MAX_PROPERTIES = 256  # per object
MAX_ENUM = 1024  # values per enum


class Node:
    """A grammar node. Nodes hash by identity: a compiled schema is one graph, built once and cached."""

    __slots__ = ("min_bytes",)
    min_bytes: int


class StringNode(Node):
    __slots__ = ("max_len", "min_len")

    def __init__(self, min_len: int = 0, max_len: int | None = None) -> None:
        self.min_len, self.max_len = min_len, max_len
        self.min_bytes = 2 + min_len


class NumberNode(Node):
    __slots__ = ("integer",)

    def __init__(self, *, integer: bool) -> None:
        self.integer = integer
        self.min_bytes = 1


class LiteralNode(Node):
    """One of a few fixed texts: true/false, null, the values of an ``enum`` or a ``const``."""

    __slots__ = ("texts",)

    def __init__(self, texts: tuple[bytes, ...]) -> None:
        self.texts = tuple(dict.fromkeys(texts))
        self.min_bytes = min(len(t) for t in self.texts)


class AnyNode(Node):
    """Any JSON value; objects and arrays nest at most `MAX_FREE_DEPTH` deep."""

    __slots__ = ("alternatives", "depth")

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.min_bytes = 1  # "0"
        self.alternatives: tuple[Node, ...] = ()  # filled by _free_values (the graph is cyclic by depth)


class UnionNode(Node):
    __slots__ = ("alternatives",)

    def __init__(self, alternatives: tuple[Node, ...]) -> None:
        self.alternatives = alternatives
        self.min_bytes = min(a.min_bytes for a in alternatives)


class ArrayNode(Node):
    __slots__ = ("items", "max_items", "min_items")

    def __init__(self, items: Node, min_items: int = 0, max_items: int | None = None) -> None:
        self.items, self.min_items, self.max_items = items, min_items, max_items
        self.min_bytes = 1 + self.rest_after(0)

    def rest_after(self, count: int) -> int:
        """Fewest bytes that close the array once ``count`` items are complete (commas, items, ``]``)."""
        missing = max(0, self.min_items - count)
        separators = missing if count > 0 else max(0, missing - 1)
        return missing * self.items.min_bytes + separators + 1


class ObjectNode(Node):
    """Listed properties in order (``keys[i]`` is the property's JSON text with its quotes), optional
    ones skippable; ``additional`` is the schema of extra keys' values, or None when extras are refused."""

    __slots__ = ("additional", "after", "can_close", "candidates", "keys", "required", "values")

    def __init__(self, props: list[tuple[str, Node, bool]], additional: Node | None) -> None:
        self.keys = tuple(json.dumps(name, ensure_ascii=False).encode() for name, _, _ in props)
        self.values = tuple(node for _, node, _ in props)
        self.required = tuple(req for _, _, req in props)
        self.additional = additional
        n = len(props)
        # candidates[i]: the properties that may come next when the next unlisted index is i: i..(the
        # first required one at or after i); can_close[i]: no required property is left at or after i.
        self.candidates = tuple(
            tuple(range(i, next((j + 1 for j in range(i, n) if self.required[j]), n))) for i in range(n + 1)
        )
        self.can_close = tuple(not any(self.required[i:]) for i in range(n + 1))
        n, big = len(self.keys), 1 << 40
        after = [big] * (n + 1)  # after[i]: fewest bytes to close after a value, next index i
        for i in range(n, -1, -1):
            close = 1 if self.can_close[i] else big
            key = min((self.key_cost(j, after) for j in self.candidates[i]), default=big)
            after[i] = min(close, 1 + key)  # "}" or "," + the cheapest next property
        self.after = tuple(after)
        first_key = min((self.key_cost(j, after) for j in self.candidates[0]), default=big)
        self.min_bytes = 1 + min(1 if self.can_close[0] else big, first_key)

    def key_cost(self, j: int, after: list[int] | tuple[int, ...] | None = None) -> int:
        """Fewest bytes from the start of property ``j``'s key to the end of the object."""
        table = self.after if after is None else after
        return len(self.keys[j]) + 1 + self.values[j].min_bytes + table[j + 1]

    def free_key_cost(self, i: int) -> int:
        """Fewest bytes from the start of an extra key (next listed index ``i``) to the end of the object."""
        assert self.additional is not None
        return 3 + self.additional.min_bytes + self.after[i]  # '""' ':' value, then close


_BOOLEAN = LiteralNode((b"true", b"false"))
_NULL = LiteralNode((b"null",))


def _free_values() -> list[AnyNode]:
    """The free-form JSON grammar: `AnyNode` per depth; at the deepest level no objects or arrays."""
    levels = [AnyNode(d) for d in range(MAX_FREE_DEPTH + 1)]
    scalars: tuple[Node, ...] = (StringNode(), NumberNode(integer=False), _BOOLEAN, _NULL)
    for depth, node in enumerate(levels):
        if depth == MAX_FREE_DEPTH:
            node.alternatives = scalars
            continue
        child = levels[depth + 1]
        node.alternatives = (*scalars, ObjectNode([], child), ArrayNode(child))
    return levels


_FREE_LEVELS = _free_values()
ANY_VALUE: Node = _FREE_LEVELS[0]
FREE_OBJECT: Node = ObjectNode([], _FREE_LEVELS[1])  # what response_format json_object asks for


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.resolving: list[str] = []
        self.done: dict[str, Node] = {}
        self.depth = 0

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"response_format json_schema at {path or '#'}: {message}")

    def node(self, schema: Any, path: str) -> Node:
        self.depth += 1  # every nested schema (a property's, items, a $ref's target, an alternative)
        try:
            if self.depth > MAX_DEPTH:
                raise self.fail(path, f"the schema nests deeper than {MAX_DEPTH} levels; flatten it")
            return self._node(schema, path)
        finally:
            self.depth -= 1

    def _node(self, schema: Any, path: str) -> Node:
        if schema is True or schema == {}:
            return ANY_VALUE
        if not isinstance(schema, Mapping):
            raise self.fail(path, f"a schema must be an object or true, got {json.dumps(schema)[:60]}")
        allowed = _GENERIC | ANNOTATIONS | frozenset().union(*_TYPE_KEYWORDS.values())
        unknown = sorted(k for k in schema if k not in allowed)
        if unknown:
            raise self.fail(
                path,
                f"keyword {unknown[0]!r} is not supported by constrained decoding; supported: type, "
                "properties, required, additionalProperties, items, minItems, maxItems, minLength, "
                "maxLength, enum, const, anyOf, $ref (to $defs)",
            )
        if "$ref" in schema:
            return self.ref(schema, path)
        if "const" in schema:
            return LiteralNode((_literal(schema["const"]),))
        if "enum" in schema:
            return self.enum(schema["enum"], path)
        if "anyOf" in schema:
            return self.any_of(schema, path)
        return self.typed(schema, path)

    def ref(self, schema: Mapping[str, Any], path: str) -> Node:
        ref = schema["$ref"]
        if len(schema.keys() - ANNOTATIONS) > 1:
            raise self.fail(path, "$ref must stand alone (beside annotations only)")
        prefix = next((p for p in ("#/$defs/", "#/definitions/") if str(ref).startswith(p)), None)
        defs = self.root.get(prefix[2:-1]) if prefix else None
        target = defs.get(str(ref)[len(prefix) :]) if prefix and isinstance(defs, Mapping) else None
        if target is None:
            raise self.fail(path, f"$ref {ref!r} does not name an entry of $defs or definitions")
        if ref in self.done:
            return self.done[ref]
        if ref in self.resolving:
            raise self.fail(path, f"$ref {ref!r} is recursive; recursive schemas are not supported")
        self.resolving.append(ref)
        node = self.done[ref] = self.node(target, str(ref)[1:])
        self.resolving.pop()
        return node

    def enum(self, values: Any, path: str) -> Node:
        if not isinstance(values, list) or not 0 < len(values) <= MAX_ENUM:
            raise self.fail(path, f"enum must be a list of 1 to {MAX_ENUM} values")
        return LiteralNode(tuple(_literal(v) for v in values))

    def any_of(self, schema: Mapping[str, Any], path: str) -> Node:
        options = schema["anyOf"]
        if not isinstance(options, list) or not options:
            raise self.fail(path, "anyOf must be a non-empty list of schemas")
        if schema.keys() - ANNOTATIONS - {"anyOf"}:
            raise self.fail(path, "anyOf must stand alone (beside annotations only)")
        return _union([self.node(s, f"{path}/anyOf/{i}") for i, s in enumerate(options)])

    def typed(self, schema: Mapping[str, Any], path: str) -> Node:
        kind = schema.get("type")
        if kind is None:
            kind = next((k for k, words in _TYPE_KEYWORDS.items() if words & schema.keys()), None)
        if kind is None:
            return ANY_VALUE
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds:
            raise self.fail(path, "type must name at least one type")
        nodes = [self.one_type(schema, k, path) for k in kinds]
        for word in schema.keys() & frozenset().union(*_TYPE_KEYWORDS.values()):
            if not any(word in _TYPE_KEYWORDS.get(k, ()) for k in kinds):
                raise self.fail(path, f"keyword {word!r} does not apply to type {kind!r}")
        return _union(nodes)

    def one_type(self, schema: Mapping[str, Any], kind: Any, path: str) -> Node:
        if kind == "object":
            return self.object(schema, path)
        if kind == "array":
            items = self.node(schema.get("items", True), f"{path}/items")
            low, high = _bounds(schema, "minItems", "maxItems", self.fail, path)
            return ArrayNode(items, low, high)
        if kind == "string":
            low, high = _bounds(schema, "minLength", "maxLength", self.fail, path)
            return StringNode(low, high)
        if kind in ("number", "integer"):
            return NumberNode(integer=kind == "integer")
        if kind == "boolean":
            return _BOOLEAN
        if kind == "null":
            return _NULL
        raise self.fail(
            path, f"unknown type {kind!r}; use object, array, string, number, integer, boolean or null"
        )

    def object(self, schema: Mapping[str, Any], path: str) -> Node:
        props, required = schema.get("properties", {}), schema.get("required", [])
        if not isinstance(props, Mapping) or not isinstance(required, list):
            raise self.fail(path, "properties must be an object and required a list of names")
        if len(props) > MAX_PROPERTIES or not all(isinstance(r, str) for r in required):
            raise self.fail(
                path, f"an object takes at most {MAX_PROPERTIES} properties, required only their names"
            )
        missing = [r for r in required if r not in props]
        if missing:
            raise self.fail(path, f"required property {missing[0]!r} is not in properties")
        extra = schema.get("additionalProperties", False)
        additional = None if extra is False else self.node(extra, f"{path}/additionalProperties")
        return ObjectNode(
            [
                (name, self.node(s, f"{path}/properties/{name}"), name in required)
                for name, s in props.items()
            ],
            additional,
        )


def _bounds(schema: Mapping[str, Any], low_key: str, high_key: str, fail: Any, path: str) -> tuple[int, Any]:
    low, high = schema.get(low_key, 0), schema.get(high_key)
    for key, value in ((low_key, low), (high_key, high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise fail(path, f"{key} must be a non-negative integer, got {value!r}")
    if high is not None and (high < low or high > MAX_LENGTH_TRACKED):
        raise fail(path, f"{high_key}={high} must be ≥ {low_key}={low} and ≤ {MAX_LENGTH_TRACKED}")
    if low > MAX_LENGTH_TRACKED:
        raise fail(path, f"{low_key}={low} must be ≤ {MAX_LENGTH_TRACKED}")
    return int(low), high


def _literal(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _union(nodes: list[Node]) -> Node:
    return nodes[0] if len(nodes) == 1 else UnionNode(tuple(nodes))


def compile_schema(schema: Any) -> Node:
    """The grammar of the JSON texts valid under ``schema`` (`ConfigError` for what is not supported)."""
    if schema is False:
        raise ConfigError("response_format json_schema is false: no output could ever match it")
    root = schema if isinstance(schema, Mapping) else {}
    return _Compiler(root).node(schema, "")
