"""What a finished run leaves under ``--out``:

- ``model.pt``: the whole trained module (``torch.load(path, weights_only=False)``), masks folded in and,
  after structured pruning, physically smaller;
- ``model.onnx``: the same model in ONNX (opset 17, dynamic batch axis; input ``input``, output ``output``),
  parity-checked against ``model.pt`` on test rows (`skyline.training.export`); where it cannot be exported
  faithfully there is none, and the result's notices say why;
- ``metrics.json``: exactly ``{"test_accuracy", "val_accuracy", "epochs", "workers", "train_time_s",
  "samples_per_s", "params", "sparsity", "epsilon"}``;
- ``log.jsonl``: one JSON object per epoch (the per-epoch metrics log), and ``result.json``: the whole
  `TrainResult` with the history and the configuration;
- ``curves.png``: training and validation loss and validation accuracy per epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from skyline.errors import SkylineError
from skyline.training.fit import evaluate
from skyline.training.models import count_parameters
from skyline.training.result import EpochMetrics, TrainResult

if TYPE_CHECKING:
    from torch import nn

    from skyline.training.data import DatasetSplits
    from skyline.training.session import Session


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

    config, state, data = session.config, session.state, session.data
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    sparsity = session.pruner.sparsity(session.model) if session.pruner else 0.0
    model = session.pruner.finalize(session.model) if session.pruner else session.model
    device = session.ctx.device
    test_loss, test_accuracy = evaluate(model, data.test.x, data.test.y, task=data.task, device=device)
    _, val_accuracy = evaluate(model, data.val.x, data.val.y, task=data.task, device=device)
    model = model.cpu().eval()
    artifacts = {"model": str(out / "model.pt")}
    torch.save(model, out / "model.pt")
    notices = session.notices
    if config.export_onnx:
        notices += _export(model, data, out / "model.onnx", artifacts)
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
        privacy=session.privacy.report() if session.privacy else None,
        history=history,
        stopped_early=state.stopped_early,
        notices=notices,
        artifacts=artifacts,
    )
    _write_logs(result, session, out)
    return result


def _export(model: nn.Module, data: DatasetSplits, path: Path, artifacts: dict[str, str]) -> tuple[str, ...]:
    """``model.onnx``, parity-checked on up to 64 real rows; a notice instead where it cannot be (the
    trained model is never lost to an exporter's failure)."""
    from skyline.training.export import export_checked

    try:
        rows = data.test if len(data.test) else data.train
        export_checked(model, {"input": rows.x[:64].float().numpy()}, path)
    except SkylineError as exc:
        return (f"no model.onnx: {exc}",)
    artifacts["onnx"] = str(path)
    return ()


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
