"""What a finished run leaves under ``--out``:

- ``model.pt``: the whole trained module (``torch.load(path, weights_only=False)``), masks folded in and,
  after structured pruning, physically smaller;
- ``model.onnx``: the same model in ONNX (opset 17, dynamic batch axis; input ``input``, output ``output``)
  where it exports;
- ``metrics.json``: exactly ``{"test_accuracy", "val_accuracy", "epochs", "workers", "train_time_s",
  "samples_per_s", "params", "sparsity", "epsilon"}``;
- ``log.jsonl``: one JSON object per epoch (the per-epoch metrics log), and ``result.json``: the whole
  `TrainResult` with the history and the configuration;
- ``curves.png``: training and validation loss and validation accuracy per epoch.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from skyline.training.models import count_parameters
from skyline.training.pruning import dense_weight_count
from skyline.training.result import EpochMetrics, TrainResult

if TYPE_CHECKING:
    from torch import nn

    from skyline.training.loop import Session


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> bool:
    """Export ``model`` with a dynamic batch axis; False (and no file) when the exporter cannot."""
    import torch

    model = model.cpu().eval()
    example = torch.zeros((1, *input_shape))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter chatter (deprecations, constant folding notes)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
    except Exception:  # an exporter failure must not lose the trained model; the result says no ONNX
        path.unlink(missing_ok=True)
        return False
    return True


def plot_curves(history: tuple[EpochMetrics, ...], path: Path, title: str) -> None:
    """Loss (train and validation) and validation accuracy against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h.train_loss for h in history], marker="o", label="train")
    left.plot(epochs, [h.val_loss for h in history], marker="o", label="validation")
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    left.legend()
    accuracy = [h.val_accuracy for h in history]
    if all(a is not None for a in accuracy):
        right.plot(epochs, [100 * a for a in accuracy if a is not None], marker="o", color="C2")
    right.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def finish(session: Session) -> TrainResult:
    """Fold in the masks, evaluate on the test split, write every artifact, return the result."""
    import torch

    from skyline.training.loop import evaluate

    config, state, data = session.config, session.state, session.data
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    dense = dense_weight_count(session.model)
    sparsity = session.pruner.sparsity(session.model) if session.pruner else 0.0
    model = session.pruner.finalize(session.model) if session.pruner else session.model
    if session.pruner is not None and session.pruner.kind == "structured":
        sparsity = 1.0 - dense_weight_count(model) / dense
    device = session.ctx.device
    test_loss, test_accuracy = evaluate(model, data.test, data.task, device)
    _, val_accuracy = evaluate(model, data.val, data.task, device)
    model = model.cpu().eval()
    artifacts = {"model": str(out / "model.pt")}
    torch.save(model, out / "model.pt")
    if config.export_onnx and export_onnx(model, data.input_shape, out / "model.onnx"):
        artifacts["onnx"] = str(out / "model.onnx")
    history = tuple(state.history)
    result = TrainResult(
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        val_accuracy=val_accuracy,
        epochs=len(history),
        workers=session.ctx.world_size,
        train_time_s=round(state.train_time_s, 3),
        samples_per_s=round(state.samples / state.train_time_s, 1) if state.train_time_s > 0 else 0.0,
        params=count_parameters(model),
        sparsity=round(sparsity, 6),
        epsilon=session.privacy.epsilon() if session.privacy else None,
        out_dir=out,
        history=history,
        stopped_early=state.stopped_early,
        notices=session.notices,
        artifacts=artifacts,
    )
    _write_logs(result, session, out)
    return result


def _write_logs(result: TrainResult, session: Session, out: Path) -> None:
    from dataclasses import asdict

    (out / "log.jsonl").write_text("".join(json.dumps(asdict(h)) + "\n" for h in result.history))
    if session.config.plot and result.history:
        plot_curves(result.history, out / "curves.png", f"{session.config.model} on {session.config.dataset}")
        result.artifacts["curves"] = str(out / "curves.png")
    result.artifacts["metrics"] = str(out / "metrics.json")
    (out / "metrics.json").write_text(json.dumps(result.metrics(), indent=2) + "\n")
    payload = result.to_dict() | {"config": session.config.to_dict()}
    (out / "result.json").write_text(json.dumps(payload, indent=2) + "\n")
