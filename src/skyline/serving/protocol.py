"""The Open Inference Protocol v2 wire format: inference requests and responses, JSON and binary tensors.

JSON goes through orjson (arrays serialized straight from numpy). The binary tensor data extension:
a request whose ``Inference-Header-Content-Length`` header is N carries N bytes of JSON, then the raw
little-endian bytes of every input that declares ``parameters.binary_data_size``, in input order; a
response answers in kind for outputs that ask for ``binary_data`` (or all, with the request parameter
``binary_data_output``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from skyline.serving.tensors import DATATYPES, InvalidRequestError, datatype_of

HEADER_LENGTH = "inference-header-content-length"
Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    id: str | None
    inputs: Arrays
    binary_outputs: frozenset[str]
    all_binary: bool


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise InvalidRequestError(f"input {name!r}: shape must be a list of integers, got {value!r}")
    if any(d < 0 for d in value) or len(value) > 8:
        raise InvalidRequestError(f"input {name!r}: shape {value} must have at most 8 dimensions ≥ 0")
    return tuple(value)


def _array(spec: Mapping[str, Any], binary: memoryview, offset: int) -> tuple[np.ndarray[Any, Any], int]:
    name = spec.get("name")
    if not isinstance(name, str):
        raise InvalidRequestError("every input needs a string 'name'")
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidRequestError(f"input {name!r}: datatype {datatype!r} is not one of {sorted(DATATYPES)}")
    dtype, shape = DATATYPES[datatype], _shape(spec.get("shape"), name)
    count = math.prod(shape)
    params = spec.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or offset + size > len(binary):
            raise InvalidRequestError(
                f"input {name!r}: binary_data_size {size!r} does not match its shape/body"
            )
        flat = np.frombuffer(binary[offset : offset + size], dtype=dtype.newbyteorder("<"))
        return flat.astype(dtype, copy=False).reshape(shape), offset + size
    if "data" not in spec:
        raise InvalidRequestError(f"input {name!r} has neither 'data' nor binary data")
    try:
        flat = np.asarray(spec["data"], dtype=dtype).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequestError(
            f"input {name!r}: data is not a list of {datatype} values ({exc})"
        ) from None
    if flat.size != count:
        raise InvalidRequestError(f"input {name!r}: {flat.size} values do not fill shape {list(shape)}")
    return flat.reshape(shape), offset


def parse_request(body: bytes, header_length: str | None) -> InferenceRequest:
    """Parse an inference request body (JSON, or JSON followed by binary tensors)."""
    split = len(body)
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
            raise InvalidRequestError(f"{HEADER_LENGTH} {header_length!r} is not a length within the body")
        split = int(header_length)
    try:
        payload = orjson.loads(body[:split])
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise InvalidRequestError("the body must be an object with a non-empty 'inputs' list")
    binary, offset, inputs = memoryview(body)[split:], 0, {}
    for spec in payload["inputs"]:
        if not isinstance(spec, dict):
            raise InvalidRequestError("every item of 'inputs' must be an object")
        array, offset = _array(spec, binary, offset)
        if spec["name"] in inputs:
            raise InvalidRequestError(f"input {spec['name']!r} is given twice")
        inputs[spec["name"]] = array
    request_id = payload.get("id")
    params = payload.get("parameters") or {}
    outputs = payload.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and "name" in o for o in outputs):
        raise InvalidRequestError("'outputs' must be a list of objects with a 'name'")
    binary_outputs = frozenset(
        str(o["name"])
        for o in outputs
        if isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data")
    )
    return InferenceRequest(
        id=str(request_id) if request_id is not None else None,
        inputs=inputs,
        binary_outputs=binary_outputs,
        all_binary=isinstance(params, dict) and bool(params.get("binary_data_output")),
    )


def encode_response(
    *,
    model: str,
    version: int,
    request: InferenceRequest,
    outputs: Mapping[str, np.ndarray[Any, Any]],
    order: Sequence[str],
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when binary tensors follow it (else None);
    ``parameters`` become the response's OIP ``parameters`` object (e.g. the edge agent's sources)."""
    described, blobs = [], []
    for name in order:
        array = np.ascontiguousarray(outputs[name])
        item: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array.dtype),
            "shape": list(array.shape),
        }
        if request.all_binary or name in request.binary_outputs:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = array.reshape(-1)
        described.append(item)
    head: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": described}
    if request.id is not None:
        head["id"] = request.id
    if parameters:
        head["parameters"] = dict(parameters)
    try:
        text = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # a dtype orjson cannot write directly (float16): fall back to lists
        for item in described:
            if "data" in item:
                item["data"] = item["data"].tolist()
        text = orjson.dumps(head)
    if not blobs:
        return text, None
    return text + b"".join(blobs), len(text)
