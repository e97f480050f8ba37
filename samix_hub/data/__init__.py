"""Data set specs, transforms and mixed-data-set I/O.

The names below load on first use (PEP 562): ``samix_hub.data.limits`` and the other light
modules import without torch, so the command line can read them before a command runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mixed import MixedDataset
    from .specs import SPEC_KINDS, ArrayDataset, DataSource, FolderDataset, load_data
    from .transforms import eval_transform, train_transform

from .limits import DataSpecError

__all__ = [
    "SPEC_KINDS",
    "ArrayDataset",
    "DataSource",
    "DataSpecError",
    "FolderDataset",
    "load_data",
    "MixedDataset",
    "eval_transform",
    "train_transform",
]

#: public name -> the submodule that defines it (imported on first access)
_LAZY = {
    "MixedDataset": ".mixed",
    "SPEC_KINDS": ".specs",
    "ArrayDataset": ".specs",
    "DataSource": ".specs",
    "FolderDataset": ".specs",
    "load_data": ".specs",
    "eval_transform": ".transforms",
    "train_transform": ".transforms",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
