"""Recipes: named sequences of steps. Built-ins for the common cases, YAML files for everything else.

A YAML recipe::

    name: prune30-int8
    steps:
      - prune: {kind: structured, amount: 0.3, finetune_epochs: 2}
      - export: {}
      - quantize: {mode: static}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyline.compression.steps import Step, build_step
from skyline.errors import ConfigError, DataError, NotFoundError


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """A name (the variant's name in the report) and its steps, applied in order to the fp32 model."""

    name: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.name or self.name == "fp32":
            raise ConfigError(f"a recipe needs a name other than 'fp32' (the original), got {self.name!r}")
        if not self.steps:
            raise ConfigError(f"recipe {self.name!r} has no steps")


def _spec(name: str, *steps: tuple[str, dict[str, Any]]) -> Recipe:
    return Recipe(name=name, steps=tuple(build_step(step, dict(options)) for step, options in steps))


def builtin_recipes() -> dict[str, Recipe]:
    """The recipes `skyline compress --recipe NAME` knows without a file."""
    empty: dict[str, Any] = {}
    export, optimize, quantize = ("export", empty), ("optimize", empty), ("quantize", empty)
    return {
        recipe.name: recipe
        for recipe in (
            _spec("onnx", export, optimize),
            _spec("int8", export, optimize, quantize),
            _spec(
                "prune50-int8", ("prune", {"kind": "structured", "amount": 0.5}), export, optimize, quantize
            ),
            _spec("prune50", ("prune", {"kind": "structured", "amount": 0.5}), export, optimize),
            _spec("sparse50", ("prune", {"kind": "unstructured", "amount": 0.5})),
            _spec("distill-int8", ("distill", {}), export, optimize, quantize),
            _spec("torchao-int8", ("torchao", {})),
            _spec("bf16", ("half", {"dtype": "bf16"})),
        )
    }


def recipe_from_mapping(document: Any, *, source: str) -> Recipe:
    """Validate a parsed YAML document ``{name, steps: [{step: {options}}]}`` into a Recipe."""
    if not isinstance(document, dict) or not isinstance(document.get("steps"), list):
        raise DataError(f"{source}: a recipe is a mapping with 'name' and a list 'steps'")
    steps: list[Step] = []
    for position, entry in enumerate(document["steps"], start=1):
        if isinstance(entry, str):
            entry = {entry: {}}
        if not isinstance(entry, dict) or len(entry) != 1:
            raise DataError(f"{source}: step {position} must be one 'name: {{options}}' entry, got {entry!r}")
        ((step_name, options),) = entry.items()
        if options is not None and not isinstance(options, dict):
            raise DataError(f"{source}: options of step {position} ({step_name}) must be a mapping")
        steps.append(build_step(str(step_name), dict(options or {})))
    return Recipe(name=str(document.get("name") or Path(source).stem), steps=tuple(steps))


def load_recipe(spec: str) -> Recipe:
    """A built-in recipe by name, or a YAML recipe file by path."""
    builtins = builtin_recipes()
    if spec in builtins:
        return builtins[spec]
    path = Path(spec)
    if path.suffix not in (".yaml", ".yml"):
        raise NotFoundError(
            f"unknown recipe {spec!r}; built-ins are {', '.join(builtins)}, or pass a .yaml file"
        )
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise NotFoundError(f"cannot read recipe file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DataError(f"recipe file {path} is not valid YAML: {exc}") from None
    return recipe_from_mapping(document, source=str(path))
