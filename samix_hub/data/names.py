"""How a data set spec is named in public: a display name, a Hub data set id, and the spec with
no local path (what cards, provenance and run summaries record)."""

from __future__ import annotations

import os

__all__ = ["HUB_DATASETS", "dataset_info"]

#: Data set kinds whose Hugging Face Hub ids are known (for ``datasets:`` in the front matter).
HUB_DATASETS = {
    "cifar10": ("CIFAR-10", "uoft-cs/cifar10"),
    "cifar100": ("CIFAR-100", "uoft-cs/cifar100"),
    "fashion-mnist": ("Fashion-MNIST", "zalando-datasets/fashion_mnist"),
}


def dataset_info(spec: str | None) -> tuple[str, str | None, str]:
    """(display name, Hub data set id or None, spec safe to publish: no local paths)."""
    if not spec:
        return "an unrecorded data set", None, "unknown"
    kind, sep, location = spec.partition(":")
    if kind in HUB_DATASETS:
        name, hub_id = HUB_DATASETS[kind]
        return name, hub_id, kind
    if kind == "hf" and location:
        return location, location, spec
    if not sep:
        if kind == "digits":
            return "digits (scikit-learn handwritten digits)", None, "digits"
        return kind, None, kind
    base = os.path.basename(location.rstrip("/\\")) or location
    return f"{kind}:{base}", None, f"{kind}:{base}"
