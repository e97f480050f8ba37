"""Data set specs, transforms and (in later modules) mixed-data-set I/O."""

from .mixed import MixedDataset
from .specs import SPEC_KINDS, ArrayDataset, DataSource, DataSpecError, FolderDataset, load_data
from .transforms import eval_transform, train_transform

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
