"""The Hub-style Python API behind ``Generator.from_pretrained`` / ``save_pretrained`` /
``push_to_hub`` (docs/python_api.md).

It follows the keyword contract of ``huggingface_hub.ModelHubMixin`` (``revision``,
``cache_dir``, ``local_files_only``, ``force_download``, ``token``) but keeps samix-hub's own
folder layout and its checks: every download goes through :func:`samix_hub.hub.pull` (allow
patterns, no pickles, checksums, validation) and every upload through
:func:`samix_hub.hub.push` (validation, one commit, token guard). ``save_pretrained`` writes
what ``samix-hub export`` writes for a generator (``export_run.py:write_generator_folder``).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from .artifact import load as artifact_load
from .artifact.format import GENERATOR
from .artifact.validate import detect_kind
from .errors import ArtifactError, UserError
from .export_common import finalize_folder, staging_folder
from .export_run import write_generator_folder
from .extras import ONNX_EXTRA, require_extra
from .hub import push
from .models.generator import Generator as GeneratorNet
from .models.generator import MaskGenerator
from .repo_ref import parse_repo_id

__all__ = ["Generator", "load_generator", "save_generator", "push_generator"]


class Generator(GeneratorNet):
    """The SAMix^P generator with the Hub-style methods (docs/python_api.md).

    The network is :class:`samix_hub.models.generator.Generator` (``GeneratorNet`` here); this class adds
    ``from_pretrained`` (through the one loader, :func:`~samix_hub.artifact.load.load_generator`),
    ``save_pretrained`` and ``push_to_hub``. It is ``samix_hub.Generator``.
    """

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        token: str | bool | None = None,
        runtime: str = "torch",
        device: str | torch.device | None = None,
        int8: bool = False,
        **hub_kwargs: Any,
    ) -> MaskGenerator:
        """A generator from a folder, ``builtin:NAME`` or Hub repo id (docs/python_api.md).

        The keywords are those of ``huggingface_hub``'s ``from_pretrained``; the download goes
        through :func:`samix_hub.hub.pull` (only the runtime's files, no pickles, checksums,
        validation). ``runtime="torch"`` returns a :class:`Generator`, ``runtime="onnx"`` an
        :class:`~samix_hub.onnx.OnnxGenerator` with the same call and ``masks``. ``hub_kwargs``:
        ``endpoint``, ``local_dir``, ``offline``.
        """
        return artifact_load.load_generator(
            repo_id_or_path, runtime=runtime, device=device, int8=int8, revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only,
            force_download=force_download, token=token, cls=cls, **hub_kwargs,
        )  # fmt: skip

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        onnx: bool = True,
        opset: int = 18,
        repo_id: str | None = None,
    ) -> Path:
        """Write the folder ``samix-hub export`` writes: weights, config.json, card, ONNX.

        ``onnx=False`` leaves out ``onnx/generator.onnx`` (no ONNX tools needed). The folder is
        staged, checked and renamed into place; ``repo_id`` goes into the card's examples.
        """
        return save_generator(self, save_directory, onnx=onnx, opset=opset, repo_id=repo_id)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        tag: str | None = None,
        private: bool = False,
        commit_message: str | None = None,
        token: str | bool | None = None,
        endpoint: str | None = None,
        onnx: bool = True,
        opset: int = 18,
    ) -> tuple[str, str]:
        """``save_pretrained`` into a temporary folder, then one validated commit to ``repo_id``.

        ``revision`` is the branch (created from main when needed), ``tag`` tags the new commit.
        Returns ``(commit_url, commit_sha)``; the token is only handed to huggingface_hub.
        """
        return push_generator(
            self, repo_id, revision=revision, tag=tag, private=private,
            commit_message=commit_message, token=token, endpoint=endpoint, onnx=onnx,
            opset=opset,
        )  # fmt: skip


def load_generator(
    src: str | os.PathLike[str],
    runtime: str = "torch",
    device: str | torch.device | None = None,
    int8: bool = False,
    **kwargs: Any,
) -> MaskGenerator:
    """``samix_hub.load_generator``: the one loader
    (:func:`~samix_hub.artifact.load.load_generator`, same arguments), whose torch generators
    are this module's :class:`Generator` (with the Hub methods)."""
    return artifact_load.load_generator(src, runtime, device, int8, cls=Generator, **kwargs)


def save_generator(
    gen: GeneratorNet,
    save_directory: str | os.PathLike[str],
    *,
    onnx: bool = True,
    opset: int = 18,
    repo_id: str | None = None,
) -> Path:
    """Write ``gen`` as a complete generator artifact folder; return its path.

    The files are those of ``samix-hub export`` (``generator.safetensors``, ``config.json``,
    ``README.md``, with ``onnx/generator.onnx`` unless ``onnx=False``), written into a hidden
    staging folder, checked (parity, card, :func:`~samix_hub.artifact.validate.validate_artifact`) and
    only then renamed into place. An existing generator folder is replaced; any other
    non-empty folder is refused.
    """
    if onnx:
        require_extra(
            ("onnx", "onnxscript", "onnxruntime"), ONNX_EXTRA, "save_pretrained(onnx=True)"
        )
    target = Path(save_directory).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        try:
            kind = detect_kind(target)
        except ArtifactError:
            kind = None
        if kind != GENERATOR:
            raise UserError(
                f"{target}: exists, is not empty and is not a generator folder; choose another"
            )
    target = target.absolute()
    stage = staging_folder(target.parent, target.name)
    try:
        gen = copy.deepcopy(gen).cpu().eval()  # the caller's module stays where it is
        write_generator_folder(
            gen, stage, run_config=None, metrics=[], onnx=onnx, opset=opset, repo_id=repo_id
        )
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        finalize_folder(stage, target, True, GENERATOR)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


def push_generator(
    gen: GeneratorNet,
    repo_id: str,
    *,
    revision: str | None = None,
    tag: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    onnx: bool = True,
    opset: int = 18,
) -> tuple[str, str]:
    """``save_generator`` into a temporary folder, then :func:`samix_hub.hub.push` (one commit).

    Returns ``(commit_url, commit_sha)``; ``revision`` is the branch, ``tag`` tags the commit.
    The temporary folder is removed afterwards; the token only goes to ``huggingface_hub``.
    """
    parse_repo_id(repo_id)  # a malformed id fails before the export work
    with tempfile.TemporaryDirectory(prefix="samix-push-") as tmp:
        folder = save_generator(
            gen, Path(tmp) / "generator", onnx=onnx, opset=opset, repo_id=repo_id
        )
        return push(
            folder,
            repo_id,
            revision=revision,
            tag=tag,
            private=private,
            message=commit_message,
            endpoint=endpoint,
            token=token,
        )
