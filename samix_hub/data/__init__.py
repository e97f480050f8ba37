"""Data specs and data sets: ``load_data(SPEC)`` (:mod:`.specs`), the training and evaluation
transforms, and an offline mixed data set read back for torch (:class:`MixedDataset`)."""

from __future__ import annotations

from samix_hub.data.mixed import MixedDataset
from samix_hub.data.specs import SPEC_KINDS, ArrayDataset, DataSource, FolderDataset, load_data
from samix_hub.data.transforms import eval_transform, train_transform
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
