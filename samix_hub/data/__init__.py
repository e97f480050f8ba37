"""Data specs and data sets: ``load_data(SPEC)`` (:mod:`.specs`) and an offline mixed data set
read back for torch (:class:`MixedDataset`). The training and evaluation transforms are the
training loader's (:mod:`samix_hub.train.loader`)."""

from __future__ import annotations

from samix_hub.data.mixed import MixedDataset
from samix_hub.data.specs import SPEC_KINDS, ArrayDataset, DataSource, FolderDataset, load_data
from samix_hub.format.limits import DataSpecError

__all__ = [
    "SPEC_KINDS",
    "ArrayDataset",
    "DataSource",
    "DataSpecError",
    "FolderDataset",
    "load_data",
    "MixedDataset",
]
