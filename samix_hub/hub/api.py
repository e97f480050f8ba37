"""The public classes and loaders with their Hub methods (docs/python_api.md): ``Generator``
(``from_pretrained`` / ``save_pretrained`` / ``push_to_hub``), ``SAMixUp`` (which also takes a
source), ``load_generator`` and ``load_backbone``.

The methods take the keyword names and defaults of ``huggingface_hub.ModelHubMixin`` and return
what it returns (``save_pretrained``: None, or the push's ``CommitInfo``; ``push_to_hub``: a
``CommitInfo``), but keep samix-hub's own folder layout and its checks: every download goes
through :func:`samix_hub.hub.transfer.pull` (allow patterns, no pickles, checksums, validation)
and every upload through :func:`samix_hub.hub.transfer.push_commit` (validation, one commit, token
guard); :mod:`samix_hub.hub.save` writes and pushes the folders.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from samix_hub.errors import UserError
from samix_hub.export.load import (
    RUNTIMES,
    GeneratorFactory,
    check_runtime,
    open_backbone,
    open_generator,
)
from samix_hub.format.repo_ref import ResolvedSource, parse_repo_id
from samix_hub.hub.resolve import resolve_source
from samix_hub.hub.save import (
    DEFAULT_COMMIT_MESSAGE,
    branch_of,
    check_config,
    check_push_kwargs,
    push_folder,
    push_generator,
    save_generator,
)
from samix_hub.mixing.samixup import GeneratorMixUp
from samix_hub.models.generator import GeneratorConfig, GeneratorNet, MaskGenerator

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

__all__ = ["Generator", "SAMixUp", "load_generator", "load_backbone"]


class Generator(GeneratorNet):
    """The SAMix^P generator with the Hub-style methods (docs/python_api.md).

    The network is :class:`samix_hub.models.generator.GeneratorNet`; this
    class adds ``from_pretrained`` (through the one loader,
    :func:`load_generator`), ``save_pretrained`` and ``push_to_hub``
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
        return _load_generator(
            pretrained_model_name_or_path, runtime, device, int8, cls, revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only,
            force_download=force_download, token=token, **hub_kwargs,
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
        check_config(self, config)
        if push_to_hub and repo_id is None:
            raise UserError("save_pretrained(push_to_hub=True) needs repo_id='ORG/NAME'")
        if push_to_hub:
            parse_repo_id(repo_id or "")  # a malformed id fails before the export work
            check_push_kwargs(push_to_hub_kwargs)
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
        return push_folder(folder, repo_id or "", **push_to_hub_kwargs)

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
        check_config(self, config)
        return push_generator(
            self, repo_id, onnx=onnx, opset=opset, model_card_kwargs=model_card_kwargs,
            branch=branch_of(branch, revision), tag=tag, private=private,
            commit_message=commit_message, token=token, endpoint=endpoint,
            create_pr=bool(create_pr), allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns, delete_patterns=delete_patterns,
        )  # fmt: skip


def _hub_source(
    src: str | os.PathLike[str] | ResolvedSource, runtime: str, hub: dict[str, Any]
) -> ResolvedSource:
    if isinstance(src, ResolvedSource):
        return src
    check_runtime(runtime)  # before a download, as the local loader checks it before reading
    return resolve_source(src, runtime, **hub)


def _load_generator(
    src: str | os.PathLike[str] | ResolvedSource,
    runtime: str,
    device: str | torch.device | None,
    int8: bool,
    cls: GeneratorFactory,
    **hub: Any,
) -> MaskGenerator:
    return open_generator(_hub_source(src, runtime, hub), runtime, device, int8, cls)


def load_generator(
    src: str | os.PathLike[str] | ResolvedSource,
    runtime: str = "torch",
    device: str | torch.device | None = None,
    int8: bool = False,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    token: str | bool | None = None,
    **hub_kwargs: Any,
) -> MaskGenerator:
    """A frozen generator callable as ``gen(images [0, 1], partner, lam) -> (mask, mixed)``,
    from a folder, ``local-dir:FOLDER``, ``builtin:NAME`` or a Hub repo id.

    ``runtime="torch"``: a :class:`Generator` on ``device`` (default cpu). ``runtime="onnx"``:
    an :class:`~samix_hub.export.onnx.OnnxGenerator` (:func:`~samix_hub.export.load.open_generator`
    has the details); ``int8`` picks the quantised graph. ``.source`` records where it came from.

    For a Hub repo id: ``revision`` (branch, tag or commit; the same as ``@REV``),
    ``cache_dir``, ``local_files_only`` (cache only, no network), ``force_download`` and
    ``token``, as ``from_pretrained`` in huggingface_hub (docs/python_api.md); further
    ``hub_kwargs`` (``endpoint``, ``local_dir``, ``offline``) go to
    :func:`samix_hub.hub.transfer.pull`.
    """
    return _load_generator(
        src, runtime, device, int8, Generator, revision=revision, cache_dir=cache_dir,
        local_files_only=local_files_only, force_download=force_download, token=token,
        **hub_kwargs,
    )  # fmt: skip


def _runtime_device(runtime: Any, device: Any) -> tuple[str, Any]:
    """``(runtime, device)``; an older positional call ``load_backbone(src, device, runtime)``
    (a device where the runtime goes) is read the old way."""
    if runtime not in RUNTIMES and (device is None or device in RUNTIMES):
        if isinstance(runtime, torch.device) or str(runtime).split(":")[0] in (
            "cpu",
            "cuda",
            "auto",
            "mps",
        ):
            return device or "torch", runtime
    return runtime, device


def load_backbone(
    src: str | os.PathLike[str] | ResolvedSource,
    runtime: str = "torch",
    device: str | torch.device | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    token: str | bool | None = None,
    **hub_kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """(model, config.json as a dict) for a backbone folder, ``local-dir:FOLDER`` or repo id.

    The positional order is that of :func:`load_generator`: ``src``, ``runtime``, ``device``;
    so are the Hub keywords. :func:`~samix_hub.export.load.open_backbone` describes the models.
    """
    runtime, device = _runtime_device(runtime, device)
    hub = dict(
        revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
        force_download=force_download, token=token, **hub_kwargs,
    )  # fmt: skip
    return open_backbone(_hub_source(src, runtime, hub), runtime, device)


class SAMixUp(GeneratorMixUp):
    """:class:`~samix_hub.mixing.samixup.GeneratorMixUp` whose ``generator`` may also be a
    source (``builtin:NAME``, a folder, ``ORG/NAME[@REV]``), loaded with :func:`load_generator`
    (docs/mixup.md)."""

    def __init__(self, generator: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(generator, (str, os.PathLike)):
            generator = load_generator(generator)
        super().__init__(generator, *args, **kwargs)
