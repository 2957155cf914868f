"""An edge world for tests and contract suites: a signing key, a repository, a running edge cloud with an
edge token, one more token per agent it makes, and digits classifiers trained here (cached per process:
tests share them)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from skyline.edge.agent import AgentConfig, EdgeAgent
from skyline.edge.cloud import CloudConfig, EdgeCloud
from skyline.edge.cloud_app import edge_authority
from skyline.edge.digit_models import fit_model, fit_settings
from skyline.edge.publish import publish_model
from skyline.security.rbac import Role
from skyline.security.signing import generate_signing_keys
from skyline.training.data import DatasetSplits, load_dataset
from skyline.training.models import build_model

__all__ = ["EdgeWorld", "constant_classifier", "digits", "edge_world", "trained_digits"]


@functools.lru_cache(maxsize=1)
def digits() -> DatasetSplits:
    return load_dataset("digits", seed=0)


@functools.lru_cache(maxsize=8)
def trained_digits(
    arch: str = "cnn", *, epochs: int = 3, seed: int = 0, shuffled: bool = False
) -> torch.nn.Module:
    """A digits classifier trained for ``epochs``; ``shuffled`` trains it on permuted labels (a model made
    worse on purpose: near-chance accuracy)."""
    splits = digits()
    torch.manual_seed(seed)
    model = build_model(arch, splits.input_shape, splits.num_classes)
    train = splits.train
    if shuffled:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        train = type(train)(train.x, train.y[order])
    return fit_model(model, train, fit_settings(epochs=epochs, seed=seed))


def constant_classifier(input_shape: tuple[int, ...], label: int, classes: int = 3) -> torch.nn.Module:
    """A classifier that gives every input to ``label`` (a cloud model whose answer a test can predict)."""
    linear = torch.nn.Linear(int(torch.tensor(input_shape).prod()), classes)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), classes).float() * 20)
    return torch.nn.Sequential(torch.nn.Flatten(), linear).eval()


@dataclass
class EdgeWorld:
    """A running edge cloud over a signed repository; ``publish`` adds versions, ``agent`` makes agents.
    ``token`` is an edge token of the device ``edge-device`` (for clients that are no agent)."""

    folder: Path
    cloud: EdgeCloud
    token: str
    private_key: Path
    public_key: Path

    @property
    def repository(self) -> Path:
        return self.cloud.config.repository

    def publish(self, model: torch.nn.Module, *, name: str = "digits", version: int, **options: Any) -> Path:
        """Publish ``model`` (digits-shaped) as ``name`` ``version``, signed with the world's key unless
        ``private_key`` says otherwise."""
        options.setdefault("private_key", self.private_key)
        return publish_model(
            model, digits().input_shape, root=self.repository, name=name, version=version, **options
        )

    def agent_token(self, name: str) -> str:
        """A fresh ``edge`` token for agent ``name``: an agent's token speaks only for that agent."""
        return self.cloud.authority.issue(name, Role.EDGE)

    def agent(self, name: str = "edge-agent", **options: Any) -> EdgeAgent:
        """An agent named ``name`` (not started) with its own token unless ``token`` is given."""
        settings: dict[str, Any] = {
            "cloud_url": self.cloud.url, "public_key": self.public_key, "model": "digits",
            "store": self.folder / "agents" / name, "name": name, **options,
        }  # fmt: skip
        settings.setdefault("token", self.agent_token(name))
        return EdgeAgent(AgentConfig(**settings))


@contextmanager
def edge_world(
    folder: Path, *, tick_s: float = 1.0, served: Sequence[tuple[torch.nn.Module, dict[str, Any]]] = ()
) -> Iterator[EdgeWorld]:
    """An `EdgeWorld` under ``folder``, its cloud stopped on exit. ``served`` (model, publish options: a
    ``name`` other than ``digits``, an ``input_shape`` other than the digits') are published as versions
    1, 2, … before the cloud starts: its inference server serves each model's newest (a version published
    later is pulled by agents and split, not served for OIP inference until loaded)."""
    private, public = generate_signing_keys(folder / "keys" / "signing.key", folder / "keys" / "signing.pub")
    versions: dict[str, int] = {}
    for model, options in served:
        settings = {"name": "digits", "input_shape": digits().input_shape, **options}
        versions[settings["name"]] = versions.get(settings["name"], 0) + 1
        publish_model(
            model, settings.pop("input_shape"), root=folder / "repository", version=versions[settings["name"]],
            private_key=private, **settings,
        )  # fmt: skip
    config = CloudConfig(
        repository=folder / "repository", tokens=folder / "tokens.json", ingest=folder / "ingest.db",
        public_key=public, port=0, tick_s=tick_s,
    )  # fmt: skip
    authority, token = edge_authority(config.tokens)
    with EdgeCloud(config, authority=authority) as cloud:
        yield EdgeWorld(folder=folder, cloud=cloud, token=token, private_key=private, public_key=public)
