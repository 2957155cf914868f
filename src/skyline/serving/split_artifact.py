"""A splittable model: the ONNX graph cut into segments where exactly one tensor crosses, for split inference.

Neurosurgeon cuts a network between two layers and sends the one activation that crosses. Any ONNX graph
the user trained can be cut wherever its data flow narrows to a single tensor: after node ``i`` (in the
graph's topological order) the *live* tensors are those computed from the graph's input by nodes up to
``i`` and still read by a later node or returned; where that set is one tensor, the graph can be cut there
(a chain of layers has such a point between every two layers; a residual block only around the block).
Constants and weights are not live: every segment carries the ones it reads.

``write_split(model.onnx, version_folder)`` writes ``split/segment-NN.onnx`` (ONNX's own sub-model
extraction) and ``split/split.json``; segment ``k`` maps cut ``k`` (cut 0 is the model's input) to cut
``k + 1`` (the last segment ends at the model's output). The folder is signed with the rest of the version
(`skyline.security.signing` covers every file under it), so edge and cloud load the same verified segments.
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyline.errors import ConfigError, DataError, NotFoundError
from skyline.serving.runtime import onnx_session, onnx_signature
from skyline.serving.tensors import TensorSpec

SPLIT_DIR = "split"
SPLIT_SPEC = "split.json"
SPLIT_FORMAT = "skyline-split/1"
MAX_SEGMENTS = 64  # beyond this, evenly spaced cuts are kept: each segment costs one runtime call


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitSegment:
    """One segment: its ONNX file (relative to the version folder), the tensor it takes and the one it returns."""

    file: str
    input: TensorSpec
    output: TensorSpec

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "input": self.input.to_json(), "output": self.output.to_json()}


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitSpec:
    """The segments of a splittable model, in order: cut ``k`` is segment ``k``'s input (cut 0: the model's)."""

    segments: tuple[SplitSegment, ...]

    def __post_init__(self) -> None:
        if len(self.segments) < 2:
            raise ConfigError("a split model needs at least two segments (one cut inside the network)")
        for before, after in itertools.pairwise(self.segments):
            if before.output.name != after.input.name:
                raise ConfigError(
                    f"segment {before.file} returns {before.output.name!r} but {after.file} takes "
                    f"{after.input.name!r}: the segments do not chain"
                )

    def cut_bytes(self, k: int) -> int:
        """Bytes of one input's tensor crossing cut ``k`` (0: the model's input; ``len``: nothing crosses)."""
        if k == len(self.segments):
            return 0
        spec = self.segments[k].input
        return math.prod(spec.shape[1:]) * spec.dtype.itemsize

    def to_json(self) -> dict[str, Any]:
        return {"format": SPLIT_FORMAT, "segments": [s.to_json() for s in self.segments]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SplitSpec:
        try:
            if data["format"] != SPLIT_FORMAT:
                raise ValueError(f"format {data['format']!r}")
            segments = tuple(
                SplitSegment(
                    file=str(s["file"]),
                    input=TensorSpec.from_json(s["input"]),
                    output=TensorSpec.from_json(s["output"]),
                )
                for s in data["segments"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{SPLIT_SPEC} is malformed ({exc}); re-pack the model with --split") from exc
        for segment in segments:
            path = Path(segment.file)
            if path.is_absolute() or ".." in path.parts or path.parts[:1] != (SPLIT_DIR,):
                raise ConfigError(f"{SPLIT_SPEC} names {segment.file!r}, a file outside {SPLIT_DIR}/")
        return cls(segments=segments)


def cut_points(model: Any) -> list[str]:
    """Names of the tensors where ``model`` (an ``onnx.ModelProto``) can be cut, in order of computation."""
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    live_from = {i.name for i in graph.input if i.name not in weights}  # tensors that depend on the input
    last_read: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_read[name] = index
    for output in graph.output:
        last_read[output.name] = len(graph.node)
    cuts: list[str] = []
    alive = set(live_from)
    for index, node in enumerate(graph.node[:-1]):
        if any(name in live_from for name in node.input):
            live_from.update(node.output)
            alive.update(o for o in node.output if o)
        alive = {name for name in alive if last_read.get(name, -1) > index}
        if len(alive) == 1:
            (name,) = alive
            if not cuts or cuts[-1] != name:
                cuts.append(name)
    return [name for name in cuts if name not in {i.name for i in graph.input}]


def _fixed_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Per-input shapes (batch excluded) of every intermediate tensor whose other sizes are known."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = value.type.tensor_type.shape.dim
        sizes = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
        if sizes and all(s > 0 for s in sizes[1:]):
            shapes[value.name] = sizes[1:]
    return shapes


def _evenly(cuts: Sequence[str], most: int) -> list[str]:
    if len(cuts) <= most:
        return list(cuts)
    step = len(cuts) / most
    return [cuts[math.floor(i * step)] for i in range(most)]


def _folded(source: Path, target: Path) -> Path:
    """``source`` with ONNX Runtime's basic (hardware-independent, semantics-preserving) rewrites applied:
    constant folding removes the shape arithmetic that exporters emit for padding (``Shape`` of the input
    feeding every ``Pad``), which would otherwise keep the input alive across the whole graph."""
    try:
        onnx_session(source, intra_op_threads=1, optimization="basic", save_optimized=target)
    except DataError as exc:
        raise ConfigError(f"ONNX Runtime cannot load {source} to split it: {exc}") from exc
    return target


def write_split(source: Path, folder: Path, *, max_segments: int = MAX_SEGMENTS) -> SplitSpec:
    """Cut the ONNX model ``source`` into segments under ``folder/split/``; returns what was written.

    Raises `ConfigError` when the graph has no cut point (one input and output are needed, and at least
    one place where a single tensor of known shape crosses)."""
    import onnx

    if max_segments < 2:
        raise ConfigError(f"max_segments must be >= 2, got {max_segments}")
    with tempfile.TemporaryDirectory() as scratch:
        model = onnx.load(str(_folded(source, Path(scratch) / "folded.onnx")))
    weights = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ConfigError(
            f"{source} has {len(inputs)} inputs and {len(model.graph.output)} outputs; split inference "
            "needs a model with one of each"
        )
    shapes = _fixed_shapes(model)
    cuts = _evenly([c for c in cut_points(model) if c in shapes], max_segments - 1)
    if not cuts:
        raise ConfigError(f"{source} has no point where one tensor crosses: it cannot be split")
    spec = SplitSpec(segments=_extract(model, [inputs[0], *cuts, model.graph.output[0].name], folder))
    (folder / SPLIT_DIR / SPLIT_SPEC).write_text(json.dumps(spec.to_json(), indent=1) + "\n")
    return spec


def _extract(model: Any, bounds: list[str], folder: Path) -> tuple[SplitSegment, ...]:
    """One segment file per pair of consecutive ``bounds`` (ONNX's own sub-model extraction)."""
    import onnx
    from onnx import utils

    (folder / SPLIT_DIR).mkdir(parents=True, exist_ok=True)
    segments = []
    with tempfile.TemporaryDirectory() as scratch:
        full = Path(scratch) / "model.onnx"
        onnx.save(onnx.shape_inference.infer_shapes(model), str(full))
        for k, (start, stop) in enumerate(itertools.pairwise(bounds)):
            name = f"{SPLIT_DIR}/segment-{k:02d}.onnx"
            utils.extract_model(str(full), str(folder / name), [start], [stop])
            (spec_in,), (spec_out,) = onnx_signature(folder / name)
            segments.append(SplitSegment(file=name, input=spec_in, output=spec_out))
    return tuple(segments)


def read_split(folder: Path) -> SplitSpec:
    """The split spec of a version folder (`NotFoundError` when the model was packed without ``--split``)."""
    path = folder / SPLIT_DIR / SPLIT_SPEC
    if not path.is_file():
        raise NotFoundError(f"{folder} holds no split model; pack it with 'skyline serve pack --split'")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}); re-pack the model with --split") from exc
    return SplitSpec.from_json(data)
