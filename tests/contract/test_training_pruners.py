"""Contract of every registered pruner (`PRUNERS`) on every registered model (`MODELS`)."""

from __future__ import annotations

import pytest
import torch

from skyline.errors import ConfigError
from skyline.training.models import MODELS, build_model
from skyline.training.pruning import PRUNERS, make_pruner

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", sorted(PRUNERS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_pruner_contract(kind: str, model_name: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_name, (1, 8, 8), 10).eval()
    if kind == "structured" and model_name == "linear":
        with pytest.raises(ConfigError, match="no hidden layer"):
            make_pruner(kind, model)
        return
    pruner = make_pruner(kind, model)
    assert pruner.kind == kind
    pruner.update(model, 0.0)
    assert pruner.sparsity(model) == 0.0  # nothing pruned at target 0
    pruner.update(model, 0.4)
    low = pruner.sparsity(model)
    pruner.update(model, 0.2)  # a lower target never un-prunes
    assert pruner.sparsity(model) == low > 0
    saved = pruner.state_dict()
    restored = make_pruner(kind, model)
    restored.load_state_dict(saved)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # an optimizer step moved everything, pruned weights too
    restored.apply(model)
    assert restored.sparsity(model) == pytest.approx(low)
    inputs = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        expected = model(inputs)
        final = restored.finalize(model).eval()
        assert torch.allclose(final(inputs), expected, atol=1e-4)
