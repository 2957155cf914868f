"""The PyTorch path: int8 through torchao, and half precision (bf16/fp16) where the hardware runs it."""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Literal

import torch
from torch import nn

from skyline.compression.artifact import TorchArtifact
from skyline.errors import ConfigError

HalfDtype = Literal["bf16", "fp16"]
TorchaoScheme = Literal["int8-dynamic", "int8-weight-only"]


def torchao_int8(source: TorchArtifact, *, scheme: TorchaoScheme = "int8-dynamic") -> TorchArtifact:
    """Quantize every Linear with torchao (convolutions stay float: torchao targets linear layers)."""
    # torchao logs failures to load its optional CUDA kernels at import; they do not matter on CPU.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )

        configs = {
            "int8-dynamic": Int8DynamicActivationInt8WeightConfig,
            "int8-weight-only": Int8WeightOnlyConfig,
        }
        if scheme not in configs:
            raise ConfigError(f"torchao scheme must be one of {', '.join(configs)}, got {scheme!r}")
        module = copy.deepcopy(source.module).eval()
        quantize_(module, configs[scheme]())
    return TorchArtifact(module)


def half_supported(dtype: HalfDtype) -> bool:
    """fp16 needs a GPU here (CPU fp16 kernels are emulated and slow); bf16 runs on CPUs and GPUs."""
    return dtype == "bf16" or torch.cuda.is_available()


def to_half(source: TorchArtifact, *, dtype: HalfDtype = "bf16") -> TorchArtifact:
    """A copy of the module in bf16/fp16; refused with a clear message where the hardware lacks it."""
    torch_dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype not in torch_dtypes:
        raise ConfigError(f"half dtype must be bf16 or fp16, got {dtype!r}")
    if not half_supported(dtype):
        raise ConfigError("fp16 needs a CUDA device on this build; use dtype: bf16 on CPU")
    module: nn.Module = copy.deepcopy(source.module).to(torch_dtypes[dtype]).eval()
    if dtype == "fp16":
        module = module.cuda()
    return TorchArtifact(module, dtype=torch_dtypes[dtype])
