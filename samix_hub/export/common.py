"""What both export writers share: the staging folder and its rename into place, the parity
tolerances, the report of what was written, and two cells of the model cards."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from samix_hub.errors import ArtifactError, UserError
from samix_hub.export.curves import is_curves_png
from samix_hub.export.onnx import PARITY_TOL
from samix_hub.export.validate import list_files
from samix_hub.fileio import fault_of
from samix_hub.fileio.guard import foreign_files, guard_output
from samix_hub.format.artifact import (
    BACKBONE_ONNX,
    BACKBONE_WEIGHTS,
    CARD_NAME,
    CONFIG_NAME,
    GENERATOR_ONNX,
    GENERATOR_ONNX_INT8,
    GENERATOR_WEIGHTS,
)
from samix_hub.format.run import CURVES_NAME

__all__ = [
    "PARITY_TOL",
    "ExportReport",
    "ARTIFACT_FILES",
    "check_replaceable",
    "finalize_folder",
    "named_fault",
    "staged",
    "staging_folder",
    "num_params",
    "files_cell",
    "check_parity",
    "copy_curves",
]


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


#: Every file an export writes into an artifact folder: ``--force`` replaces a folder holding
#: only these (and the files of the new export).
ARTIFACT_FILES = frozenset(
    {
        CONFIG_NAME,
        CARD_NAME,
        GENERATOR_WEIGHTS,
        BACKBONE_WEIGHTS,
        GENERATOR_ONNX,
        GENERATOR_ONNX_INT8,
        BACKBONE_ONNX,
        CURVES_NAME,
    }
)


def check_replaceable(
    target: Path,
    force: bool,
    kind: str,
    inputs: Sequence[str | os.PathLike[str]] = (),
    stage: Path | None = None,
) -> None:
    """Refuse to write the ``kind`` artifact folder ``target`` when it exists, unless ``force``;
    even then, refuse a link, a folder that is or holds one of ``inputs``, a samix-hub folder
    of another kind, and a folder holding a file an export does not write (``--force`` deletes
    only what samix-hub wrote). Call it before long work, and again with ``stage`` at rename."""
    if not (target.exists() or target.is_symlink()):
        guard_output(target, "--out", inputs=inputs, replaces=True, kind=kind)
        return
    if not force:
        raise UserError(f"{target}: exists; pass --force to replace it")
    guard_output(target, "--out", inputs=inputs, replaces=True, kind=kind)
    if not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder; --force replaces only folders")
    allowed = set(ARTIFACT_FILES) | (set(list_files(stage)) if stage is not None else set())
    foreign = foreign_files(target, allowed)
    if foreign:
        raise UserError(
            f"{target}: holds {foreign[0]}, which an export does not write; --force replaces "
            "only samix-hub's own files; move it away or choose another --out"
        )


def named_fault(exc: BaseException, stage: Path, target: Path) -> OSError | None:
    """A storage fault while writing ``stage`` (disk full, ``ulimit -f``, a library's own error
    such as safetensors') as an ``OSError`` naming the file in ``target``; None for any other
    error."""
    fault = fault_of(exc)
    if fault is None:
        return None
    name = Path(fault.filename) if fault.filename else None
    if name is not None and stage in name.parents:
        name = target / name.relative_to(stage)
    return OSError(fault.errno, fault.strerror, str(name or target))


def finalize_folder(
    stage: Path,
    target: Path,
    force: bool,
    kind: str,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Rename a checked staging folder onto ``target`` (replacing it only with ``force``, and
    only when :func:`check_replaceable` allows it)."""
    check_replaceable(target, force, kind, inputs, stage)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{stage.name}")
        target.rename(old)
    stage.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged(out: Path, name: str) -> Iterator[Path]:
    """A staging folder for ``out/name`` (:func:`staging_folder`), always removed afterwards; a
    storage fault while writing it is re-raised as one ``OSError`` naming the file in
    ``out/name`` (:func:`named_fault`), which the CLI prints as one line."""
    stage = staging_folder(out, name)
    try:
        yield stage
    except Exception as exc:
        fault = named_fault(exc, stage, out / name)
        if fault is None:
            raise
        raise fault from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


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


def copy_curves(run_dir: Path | None, folder: Path) -> str:
    """Copy the run's ``curves.png`` into ``folder``; returns the card's line that shows it
    ("" when the run has no such picture)."""
    if run_dir is None or not is_curves_png(run_dir / CURVES_NAME):
        return ""
    shutil.copyfile(run_dir / CURVES_NAME, folder / CURVES_NAME)
    return (
        f"\n\n![Training curves: loss, top-1 accuracy, learning rate and, with a mixer, its mask "
        f"statistics against the step]({CURVES_NAME})"
    )
