"""Shared fixtures: tiny models, seeded generators, paths to real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
CIFAR_SUBSET = SHARED_DATA / "cifar10_subset_4k_1k.npz"


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def cifar_subset() -> Path:
    if not CIFAR_SUBSET.is_file():
        pytest.skip("../shared/data/cifar10_subset_4k_1k.npz is absent")
    return CIFAR_SUBSET
