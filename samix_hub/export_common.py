"""What both export writers share: the staging folder and its rename into place, the parity
tolerances, the report of what was written, and two cells of the model cards."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from .artifact.format import CARD_NAME
from .artifact.validate import list_files
from .errors import ArtifactError, UserError

__all__ = [
    "PARITY_TOL",
    "ExportReport",
    "finalize_folder",
    "staging_folder",
    "num_params",
    "files_cell",
    "check_parity",
]

#: Max |torch - onnxruntime| accepted: mask and mixed 1e-4, logits 1e-3.
PARITY_TOL = {"mask": 1e-4, "mixed": 1e-4, "logits": 1e-3}


@dataclass
class ExportReport:
    """What an export wrote and measured."""

    kind: str
    path: Path
    files: dict[str, int] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    int8: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "files": self.files,
            "parity": self.parity,
            "int8": self.int8,
        }


def finalize_folder(stage: Path, target: Path, force: bool) -> None:
    """Rename a checked staging folder onto ``target`` (replacing it only with ``force``)."""
    old = None
    if target.exists():
        if not force:
            raise UserError(f"{target}: exists; pass --force to replace it")
        old = target.with_name(f".{target.name}.old-{stage.name}")
        target.rename(old)
    stage.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_folder(out: Path, name: str) -> Path:
    """A hidden, empty folder beside the final one (same file system, so rename is atomic)."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out))


def num_params(module: nn.Module) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def files_cell(folder: Path) -> str:
    return ", ".join(f"`{k}`" for k in list_files(folder) if k != CARD_NAME) + f", `{CARD_NAME}`"


def check_parity(parity: dict[str, float], folder: Path) -> None:
    for key, value in parity.items():
        if not value <= PARITY_TOL[key]:
            raise ArtifactError(
                f"{folder}: onnxruntime differs from torch on {key} by {value:.2e} "
                f"(> {PARITY_TOL[key]:.0e}); export refused"
            )
