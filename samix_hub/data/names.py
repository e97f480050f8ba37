"""How a data set spec is named in public: a display name, a Hub data set id, and the spec with
no local path (what cards, provenance and run summaries record)."""

from __future__ import annotations

import os
import re

__all__ = ["HUB_DATASETS", "dataset_info", "public_dataset_info", "hub_dataset_id", "local_name"]

#: Data set kinds whose Hugging Face Hub ids are known (for ``datasets:`` in the front matter).
HUB_DATASETS = {
    "cifar10": ("CIFAR-10", "uoft-cs/cifar10"),
    "cifar100": ("CIFAR-100", "uoft-cs/cifar100"),
    "fashion-mnist": ("Fashion-MNIST", "zalando-datasets/fashion_mnist"),
}


#: A Hub data set id: ``NAME`` or ``ORG/NAME`` (letters, digits, ``-``, ``_``, ``.``).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def hub_dataset_id(location: str) -> str | None:
    """``location`` of an ``hf:`` spec when it names a Hub data set, None when it is a local
    folder or file (``datasets.load_dataset`` takes both): a path that exists here, or
    anything that is not ``NAME`` / ``ORG/NAME``."""
    if not _HUB_ID.match(location) or ".." in location:
        return None
    if os.path.exists(os.path.expanduser(location)):
        return None
    return location


def local_name(kind: str) -> str:
    """The public name of local data of ``kind``: no path, no folder or file name."""
    return f"local data ({kind})" if kind else "local data"


def dataset_info(spec: str | None) -> tuple[str, str | None, str]:
    """(display name, Hub data set id or None, spec safe to publish: no local paths)."""
    if not spec:
        return "an unrecorded data set", None, "unknown"
    kind, sep, location = spec.partition(":")
    if kind in HUB_DATASETS:
        name, hub_id = HUB_DATASETS[kind]
        return name, hub_id, kind
    if kind == "hf" and location:
        repo = None if location == "local" else hub_dataset_id(location)
        if repo is None:  # a local folder or file given to datasets.load_dataset
            return local_name("hf"), None, "hf:local"
        return repo, repo, f"hf:{repo}"
    if not sep:
        if kind == "digits":
            return "digits (scikit-learn handwritten digits)", None, "digits"
        if kind.endswith(".npz") or "/" in kind or "\\" in kind:  # a bare path to an .npz
            base = os.path.basename(kind.rstrip("/\\"))
            return f"npz:{base}", None, f"npz:{base}"
        return kind, None, kind
    base = os.path.basename(location.rstrip("/\\")) or location
    return f"{kind}:{base}", None, f"{kind}:{base}"


def public_dataset_info(spec: str | None) -> tuple[str, str | None, str]:
    """:func:`dataset_info` for what a published data set card names: a Hub data set by its
    id, local data (``folder:``, ``npz:``, ``hf:`` with a local path, a bare ``.npz`` path) as
    ``local data (KIND)`` with neither path nor file name."""
    name, hub_id, public = dataset_info(spec)
    if hub_id is not None or not spec or public in ("digits", "unknown"):
        return name, hub_id, public
    kind = public.partition(":")[0]
    return local_name(kind), None, f"{kind}:local"
