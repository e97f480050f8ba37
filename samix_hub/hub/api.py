"""The Hub-style Python API behind ``Generator.from_pretrained`` / ``save_pretrained`` /
``push_to_hub`` (docs/python_api.md).

The methods take the keyword names and defaults of ``huggingface_hub.ModelHubMixin`` and return
what it returns (``save_pretrained``: None, or the push's ``CommitInfo``; ``push_to_hub``: a
``CommitInfo``), but keep samix-hub's own folder layout and its checks: every download goes
through :func:`samix_hub.hub.transfer.pull` (allow patterns, no pickles, checksums, validation) and every
upload through :func:`samix_hub.hub.transfer.push_commit` (validation, one commit, token guard).
``save_pretrained`` writes what ``samix-hub export`` writes for a generator
(``export_run.py:write_generator_folder``), with an ONNX parity check on one probe batch.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from samix_hub.errors import ArtifactError, UserError
from samix_hub.export import load as artifact_load
from samix_hub.export.common import finalize_folder, staging_folder
from samix_hub.export.generator import write_generator_folder
from samix_hub.export.schema import generator_config_from_dict
from samix_hub.export.validate import detect_kind
from samix_hub.format.artifact import GENERATOR, GENERATOR_FORMAT_VERSION
from samix_hub.format.extras import ONNX_EXTRA, require_extra
from samix_hub.format.repo_ref import parse_repo_id
from samix_hub.hub.transfer import push_commit
from samix_hub.models.generator import Generator as GeneratorNet
from samix_hub.models.generator import GeneratorConfig, MaskGenerator

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

__all__ = ["Generator", "load_generator", "save_generator", "push_generator"]


#: ``push_to_hub``'s default commit message, as ``huggingface_hub.ModelHubMixin.push_to_hub``.
DEFAULT_COMMIT_MESSAGE = "Push model using huggingface_hub."


class Generator(GeneratorNet):
    """The SAMix^P generator with the Hub-style methods (docs/python_api.md).

    The network is :class:`samix_hub.models.generator.Generator` (``GeneratorNet`` here); this
    class adds ``from_pretrained`` (through the one loader,
    :func:`~samix_hub.export.load.load_generator`), ``save_pretrained`` and ``push_to_hub``
    with the keyword names, defaults and return values of ``huggingface_hub.ModelHubMixin``.
    It does not subclass the mixin: the mixin downloads with ``hf_hub_download`` and writes
    its own ``config.json`` and card, where samix-hub's pull checks (allow patterns, no
    pickles, checksums, validation) and its artifact format (docs/artifacts.md) apply.
    """

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        runtime: str = "torch",
        device: str | torch.device | None = None,
        int8: bool = False,
        **hub_kwargs: Any,
    ) -> MaskGenerator:
        """A generator from a folder, ``builtin:NAME`` or Hub repo id (docs/python_api.md).

        The keywords are those of ``huggingface_hub``'s ``from_pretrained``; the download goes
        through :func:`samix_hub.hub.transfer.pull` (only the runtime's files, no pickles, checksums,
        validation). ``runtime="torch"`` returns a :class:`Generator`, ``runtime="onnx"`` an
        :class:`~samix_hub.export.onnx.OnnxGenerator` with the same call and ``masks``. ``hub_kwargs``:
        ``endpoint``, ``local_dir``, ``offline``.
        """
        return artifact_load.load_generator(
            pretrained_model_name_or_path, runtime, device, int8=int8, revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only,
            force_download=force_download, token=token, cls=cls, **hub_kwargs,
        )  # fmt: skip

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        config: GeneratorConfig | dict[str, Any] | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        onnx: bool = True,
        opset: int = 18,
        **push_to_hub_kwargs: Any,
    ) -> CommitInfo | None:
        """Write the folder ``samix-hub export`` writes: weights, config.json, card, ONNX.

        As ``ModelHubMixin.save_pretrained``: returns None, or with ``push_to_hub=True`` what
        :meth:`push_to_hub` returns (the folder is pushed as written; ``push_to_hub_kwargs``
        go to :func:`samix_hub.hub.transfer.push_commit`). ``config`` must be None or this generator's
        own config (``config.json`` is the generator's config). ``model_card_kwargs``:
        ``license``, ``model_name``. ``onnx=False`` leaves out ``onnx/generator.onnx`` (no ONNX
        tools needed). The folder is staged, checked and renamed into place; ``repo_id`` goes
        into the card's examples.
        """
        _check_config(self, config)
        if push_to_hub and repo_id is None:
            raise UserError("save_pretrained(push_to_hub=True) needs repo_id='ORG/NAME'")
        if push_to_hub:
            parse_repo_id(repo_id or "")  # a malformed id fails before the export work
            _check_push_kwargs(push_to_hub_kwargs)
        elif push_to_hub_kwargs:
            raise UserError(
                f"save_pretrained: unexpected keyword(s) {sorted(push_to_hub_kwargs)} "
                "(push keywords apply with push_to_hub=True only)"
            )
        folder = save_generator(
            self, save_directory, onnx=onnx, opset=opset, repo_id=repo_id,
            model_card_kwargs=model_card_kwargs,
        )  # fmt: skip
        if not push_to_hub:
            return None
        return _push_folder(folder, repo_id or "", **push_to_hub_kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        config: GeneratorConfig | dict[str, Any] | None = None,
        commit_message: str = DEFAULT_COMMIT_MESSAGE,
        private: bool | None = None,
        token: str | bool | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
        allow_patterns: list[str] | str | None = None,
        ignore_patterns: list[str] | str | None = None,
        delete_patterns: list[str] | str | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
        tag: str | None = None,
        endpoint: str | None = None,
        onnx: bool = True,
        opset: int = 18,
        revision: str | None = None,
    ) -> CommitInfo:
        """``save_pretrained`` into a temporary folder, then one validated commit to ``repo_id``.

        The keywords and the return value are those of ``ModelHubMixin.push_to_hub``: a
        ``huggingface_hub.CommitInfo``, a ``str`` equal to the commit url, with ``.oid`` (the
        commit sha) and ``.pr_url`` (with ``create_pr=True``). ``branch`` is created from main
        when needed (``revision`` is an older name for it); ``tag`` tags the new commit. The
        token is only handed to huggingface_hub.
        """
        _check_config(self, config)
        return push_generator(
            self, repo_id, branch=_branch(branch, revision), tag=tag, private=private,
            commit_message=commit_message, token=token, endpoint=endpoint, onnx=onnx,
            opset=opset, create_pr=bool(create_pr), allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns, delete_patterns=delete_patterns,
            model_card_kwargs=model_card_kwargs,
        )  # fmt: skip


#: Card keywords ``model_card_kwargs`` may set (passed to :func:`samix_hub.export.cards.render_card`).
CARD_KWARGS = frozenset({"license", "model_name"})


def _branch(branch: str | None, revision: str | None) -> str | None:
    if branch is not None and revision is not None and branch != revision:
        raise UserError(f"branch={branch!r} and revision={revision!r}: give one of them")
    return branch if branch is not None else revision


def _check_push_kwargs(kwargs: dict[str, Any]) -> None:
    """The push keywords of ``save_pretrained(push_to_hub=True)``: those :func:`_push_folder`
    takes."""
    known = set(inspect.signature(_push_folder).parameters) - {"folder", "repo_id"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise UserError(f"save_pretrained(push_to_hub=True): unexpected keyword(s) {unknown}")


def _config_json(config: GeneratorConfig) -> str:
    data = asdict(config)
    data["mixer"] = config.mixer.to_dict()
    return json.dumps(data, sort_keys=True, default=list)


def _check_config(gen: GeneratorNet, config: GeneratorConfig | dict[str, Any] | None) -> None:
    """``config`` of the mixin's methods: None, or the generator's own config (config.json is
    written from the generator; a different one would describe other weights)."""
    if config is None:
        return
    if isinstance(config, dict):
        data = {"kind": GENERATOR, "format_version": GENERATOR_FORMAT_VERSION, **config}
        try:
            config = generator_config_from_dict(data, source="config")
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if not isinstance(config, GeneratorConfig):
        raise UserError(
            f"config: expected a GeneratorConfig or a dict, got {type(config).__name__}"
        )
    if _config_json(config) != _config_json(gen.config):
        raise UserError(
            "config: differs from this generator's own config; config.json is written from "
            "the generator (pass config=None)"
        )


def _push_folder(
    folder: Path,
    repo_id: str,
    *,
    commit_message: str | None = DEFAULT_COMMIT_MESSAGE,
    private: bool | None = None,
    token: str | bool | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
    allow_patterns: list[str] | str | None = None,
    ignore_patterns: list[str] | str | None = None,
    delete_patterns: list[str] | str | None = None,
    tag: str | None = None,
    endpoint: str | None = None,
    revision: str | None = None,
) -> CommitInfo:
    """One commit of ``folder`` (:func:`samix_hub.hub.transfer.push_commit`), with the mixin's keyword
    names (``commit_message``; ``branch``, or ``revision`` its older name)."""
    return push_commit(
        folder, repo_id, revision=_branch(branch, revision), tag=tag, private=private,
        message=commit_message, endpoint=endpoint, token=token, create_pr=bool(create_pr),
        allow_patterns=allow_patterns, ignore_patterns=ignore_patterns,
        delete_patterns=delete_patterns,
    )  # fmt: skip


def load_generator(
    src: str | os.PathLike[str],
    runtime: str = "torch",
    device: str | torch.device | None = None,
    int8: bool = False,
    **kwargs: Any,
) -> MaskGenerator:
    """``samix_hub.load_generator``: the one loader
    (:func:`~samix_hub.export.load.load_generator`, same arguments), whose torch generators
    are this module's :class:`Generator` (with the Hub methods)."""
    return artifact_load.load_generator(src, runtime, device, int8, cls=Generator, **kwargs)


def save_generator(
    gen: GeneratorNet,
    save_directory: str | os.PathLike[str],
    *,
    onnx: bool = True,
    opset: int = 18,
    repo_id: str | None = None,
    model_card_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write ``gen`` as a complete generator artifact folder; return its path.

    The files are those of ``samix-hub export`` (``generator.safetensors``, ``config.json``,
    ``README.md``, with ``onnx/generator.onnx`` unless ``onnx=False``), written into a hidden
    staging folder, checked (parity on one probe batch, card,
    :func:`~samix_hub.export.validate.validate_artifact`) and only then renamed into place.
    An existing generator folder is replaced; any other non-empty folder is refused.
    """
    card_kwargs = dict(model_card_kwargs or {})
    unknown = sorted(set(card_kwargs) - CARD_KWARGS)
    if unknown:
        raise UserError(
            f"model_card_kwargs: unknown key(s) {unknown} (known: {', '.join(sorted(CARD_KWARGS))})"
        )
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
            gen, stage, run_config=None, metrics=[], onnx=onnx, opset=opset, repo_id=repo_id,
            parity="probe", card_kwargs=card_kwargs,
        )  # fmt: skip
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
    branch: str | None = None,
    tag: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    onnx: bool = True,
    opset: int = 18,
    create_pr: bool = False,
    allow_patterns: list[str] | str | None = None,
    ignore_patterns: list[str] | str | None = None,
    delete_patterns: list[str] | str | None = None,
    model_card_kwargs: dict[str, Any] | None = None,
) -> CommitInfo:
    """``save_generator`` into a temporary folder, then :func:`samix_hub.hub.transfer.push_commit`
    (one commit); returns its ``CommitInfo`` (``str`` = commit url, ``.oid``, ``.pr_url``).

    The temporary folder is removed afterwards; the token only goes to ``huggingface_hub``.
    """
    parse_repo_id(repo_id)  # a malformed id fails before the export work
    with tempfile.TemporaryDirectory(prefix="samix-push-") as tmp:
        folder = save_generator(
            gen, Path(tmp) / "generator", onnx=onnx, opset=opset, repo_id=repo_id,
            model_card_kwargs=model_card_kwargs,
        )  # fmt: skip
        return _push_folder(
            folder, repo_id, commit_message=commit_message, private=private, token=token,
            branch=branch, create_pr=create_pr, allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns, delete_patterns=delete_patterns, tag=tag,
            endpoint=endpoint,
        )  # fmt: skip
