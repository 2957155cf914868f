"""Any local Hugging Face Llama / Qwen2 / Mistral folder loads and runs exactly as transformers runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from skyline.errors import ConfigError, NotFoundError
from skyline.llm.engine import ENGINES, EngineConfig, GenerationRequest
from tests.llm_fixtures import greedy, run_to_completion, smollm

pytestmark = pytest.mark.integration
_ = smollm  # fixture

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}


def tiny_model(kind: str, folder: Path, tokenizer: Any) -> Any:
    """A random-weight model of ``kind`` saved as a Hugging Face folder with the SmolLM2 tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    extra: dict[str, Any] = {
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "initializer_range": 0.2,
    }
    if kind == "mistral":
        extra["sliding_window"] = 96
    config = AutoConfig.for_model(kind, vocab_size=len(tokenizer), **TINY, **extra)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_a_local_model_folder_generates_what_transformers_generates(
    kind: str, tmp_path: Path, smollm: Any
) -> None:
    model = tiny_model(kind, tmp_path / f"tiny-{kind}", smollm.tokenizer)
    prompts = [
        tuple(smollm.tokenizer(text)["input_ids"]) for text in ("Hello there", "A longer prompt, with commas")
    ]
    expected = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([prompt])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
            expected.append(out[0, len(prompt) :].tolist())
    engine = ENGINES["native"](EngineConfig(model=str(tmp_path / f"tiny-{kind}"), threads=1, kv_blocks=64))
    assert engine.model_name == f"tiny-{kind}"
    assert engine.max_model_len == (96 if kind == "mistral" else 256)  # a sliding window caps the context
    requests = [
        GenerationRequest(request_id=str(i), prompt_token_ids=p, params=greedy(12))
        for i, p in enumerate(prompts)
    ]
    out = run_to_completion(engine, requests)
    for i, tokens in enumerate(expected):
        assert [t for o in out[str(i)] for t in o.new_token_ids] == tokens


def test_unknown_models_and_architectures_are_refused(tmp_path: Path, smollm: Any) -> None:
    with pytest.raises(NotFoundError, match="neither a known name"):
        ENGINES["native"](EngineConfig(model=str(tmp_path / "missing")))
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path / "gpt2"
    config = AutoConfig.for_model("gpt2", n_layer=1, n_embd=32, n_head=2, vocab_size=len(smollm.tokenizer))
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    smollm.tokenizer.save_pretrained(folder)
    with pytest.raises(ConfigError, match="'gpt2' is not supported by the native engine"):
        ENGINES["native"](EngineConfig(model=str(folder)))
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="cannot load model folder"):
        ENGINES["native"](EngineConfig(model=str(folder)))
