"""Data set specs, transforms and mixed-data-set I/O.

The names below load on first use (PEP 562): ``samix_hub.format.limits`` and the other light
modules import without torch, so the command line can read them before a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from samix_hub.data.mixed import MixedDataset
    from samix_hub.data.specs import SPEC_KINDS, ArrayDataset, DataSource, FolderDataset, load_data
    from samix_hub.data.transforms import eval_transform, train_transform

from samix_hub.format.lazy import lazy_exports
from samix_hub.format.limits import DataSpecError

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
