"""OpenAPI descriptions of the hand-parsed OIP bodies (the app parses them with orjson, not pydantic, for speed)."""

from __future__ import annotations

from typing import Any

from skyline.serving.tensors import DATATYPES

_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": sorted(DATATYPES)},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}

INFER_REQUEST: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "items": _TENSOR},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                        },
                    },
                },
            }
        }
    },
}

_ERROR = {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}

INFER_RESPONSES: dict[str, Any] = {
    "200": {
        "description": "The outputs",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model_name", "outputs"],
                    "properties": {
                        "model_name": {"type": "string"},
                        "model_version": {"type": "string"},
                        "id": {"type": "string"},
                        "outputs": {"type": "array", "items": _TENSOR},
                    },
                }
            }
        },
    },
    "400": {"description": "Malformed request, wrong shape or datatype", "content": _ERROR},
    "404": {"description": "Unknown model or version", "content": _ERROR},
    "429": {"description": "The model's queue is full; retry after Retry-After seconds", "content": _ERROR},
    "503": {"description": "Timed out or unloading", "content": _ERROR},
}

INDEX_REQUEST: dict[str, Any] = {
    "required": False,
    "content": {
        "application/json": {"schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}
    },
}
