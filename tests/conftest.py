"""Shared fixtures: tiny models, seeded generators, paths to real data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from samix_hub.data import DataSource, load_data

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
CIFAR_SUBSET = SHARED_DATA / "cifar10_subset_4k_1k.npz"


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on two (often shared) cores, two threads spin against each other and
    tiny models run several times slower (measured: 182 s vs 12-19 s for one fine-tune fixture)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/fakehub.py speaks the plain LFS upload protocol: huggingface_hub must not try Xet
    (what ``HF_HUB_DISABLE_XET=1`` sets; the constant is read at import, so patch it)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture(scope="session")
def digits() -> DataSource:
    """scikit-learn's bundled handwritten digits (real data, no download)."""
    return load_data("digits")


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def cifar_subset() -> Path:
    if not CIFAR_SUBSET.is_file():
        pytest.skip("../shared/data/cifar10_subset_4k_1k.npz is absent")
    return CIFAR_SUBSET
