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
import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .artifacts import GENERATOR, PICKLE_SUFFIXES, detect_kind
from .errors import ArtifactError, UserError

__all__ = ["require_extra", "refresh_cache", "save_generator", "push_generator", "ONNX_EXTRA"]

#: The extra that installs the ONNX tools (pyproject.toml ``[project.optional-dependencies]``).
ONNX_EXTRA = "onnx"


def require_extra(modules: tuple[str, ...], extra: str, what: str) -> None:
    """Import ``modules``; a missing one is a :class:`UserError` naming the extra to install."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            hint = " (or 'samix-hub[gpu]' for CUDA)" if extra == ONNX_EXTRA else ""
            raise UserError(
                f"{what} needs the Python package {name!r}, which is not installed: "
                f"pip install 'samix-hub[{extra}]'{hint}"
            ) from None


def refresh_cache(
    repo_id: str,
    revision: str | None,
    runtime: str,
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    repo_type: str | None = None,
    offline: bool | None = None,
) -> None:
    """``force_download=True``: fetch the files ``runtime`` needs again into the cache.

    Same allow patterns as a pull and pickles are never fetched; the pull that follows then
    checks the listing, the checksums and the folder as always (and copies to ``local_dir``).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    from .hub import _hub_errors, _is_offline, allow_patterns

    if _is_offline(offline):
        raise UserError(f"{repo_id}: force_download=True needs the network, but offline mode is on")
    types = [repo_type] if repo_type else ["model", "dataset"]
    for i, kind in enumerate(types):
        with _hub_errors(repo_id, revision, endpoint):
            try:
                snapshot_download(
                    repo_id,
                    repo_type=kind,
                    revision=revision,
                    allow_patterns=allow_patterns(runtime),
                    ignore_patterns=[f"*{suffix}" for suffix in PICKLE_SUFFIXES],
                    endpoint=endpoint,
                    token=token,
                    cache_dir=str(cache_dir) if cache_dir is not None else None,
                    force_download=True,
                    library_name="samix-hub",
                )
            except RepositoryNotFoundError:
                if i < len(types) - 1:  # not a model repo: try a dataset repo
                    continue
                raise
        return


def save_generator(
    gen: Any,
    save_directory: str | os.PathLike[str],
    *,
    onnx: bool = True,
    opset: int = 18,
    repo_id: str | None = None,
) -> Path:
    """Write ``gen`` as a complete generator artifact folder; return its path.

    The files are those of ``samix-hub export`` (``generator.safetensors``, ``config.json``,
    ``README.md``, with ``onnx/generator.onnx`` unless ``onnx=False``), written into a hidden
    staging folder, checked (parity, card, :func:`~samix_hub.artifacts.validate_artifact`) and
    only then renamed into place. An existing generator folder is replaced; any other
    non-empty folder is refused.
    """
    from .export_run import finalize_folder, staging_folder, write_generator_folder

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
        finalize_folder(stage, target, force=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


def push_generator(
    gen: Any,
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
    from .hub import push
    from .sources import parse_repo_id

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
