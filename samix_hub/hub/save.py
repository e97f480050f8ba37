"""Writing and pushing a generator folder from Python (``Generator.save_pretrained`` /
``push_to_hub``, docs/python_api.md): what ``samix-hub export`` writes for a generator
(:func:`samix_hub.export.generator.write_generator_folder`), with an ONNX parity check on one
probe batch, and one validated commit through :func:`samix_hub.hub.transfer.push_commit`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samix_hub.errors import ONNX_EXTRA, ArtifactError, UserError, require_extra
from samix_hub.export.common import finalize_folder, staging_folder
from samix_hub.export.generator import write_generator_folder
from samix_hub.export.generator_config import generator_config_from_dict
from samix_hub.export.validate import detect_kind
from samix_hub.format.artifact import GENERATOR, GENERATOR_FORMAT_VERSION
from samix_hub.format.repo_ref import parse_repo_id
from samix_hub.hub.transfer import push_commit
from samix_hub.models.generator import GeneratorConfig, GeneratorNet

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

__all__ = [
    "DEFAULT_COMMIT_MESSAGE",
    "CARD_KWARGS",
    "save_generator",
    "push_generator",
    "push_folder",
    "check_config",
    "check_push_kwargs",
    "PUSH_KEYWORDS",
    "branch_of",
]

#: ``push_to_hub``'s default commit message, as ``huggingface_hub.ModelHubMixin.push_to_hub``.
DEFAULT_COMMIT_MESSAGE = "Push model using huggingface_hub."


#: Card keywords ``model_card_kwargs`` may set (passed to :func:`samix_hub.export.cards.render_card`).
CARD_KWARGS = frozenset({"license", "model_name"})


def branch_of(branch: str | None, revision: str | None) -> str | None:
    if branch is not None and revision is not None and branch != revision:
        raise UserError(f"branch={branch!r} and revision={revision!r}: give one of them")
    return branch if branch is not None else revision


#: The push keywords of ``Generator.push_to_hub`` (``ModelHubMixin``'s) that
#: ``save_pretrained(push_to_hub=True)`` and :func:`push_folder` take.
PUSH_KEYWORDS = frozenset(
    {
        "commit_message", "private", "token", "branch", "create_pr", "allow_patterns",
        "ignore_patterns", "delete_patterns", "tag", "endpoint", "revision",
    }
)  # fmt: skip


def check_push_kwargs(kwargs: dict[str, Any]) -> None:
    """The push keywords of ``save_pretrained(push_to_hub=True)``: :data:`PUSH_KEYWORDS`."""
    unknown = sorted(set(kwargs) - PUSH_KEYWORDS)
    if unknown:
        raise UserError(f"save_pretrained(push_to_hub=True): unexpected keyword(s) {unknown}")


def _config_json(config: GeneratorConfig) -> str:
    data = asdict(config)
    data["mixer"] = config.mixer.to_dict()
    return json.dumps(data, sort_keys=True, default=list)


def check_config(gen: GeneratorNet, config: GeneratorConfig | dict[str, Any] | None) -> None:
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


def push_folder(folder: Path, repo_id: str, **mixin_kwargs: Any) -> CommitInfo:
    """One commit of ``folder`` (:func:`samix_hub.hub.transfer.push_commit`) with the push
    keywords of ``ModelHubMixin.push_to_hub`` (:data:`PUSH_KEYWORDS`: ``commit_message``;
    ``branch``, or ``revision`` its older name; the others as ``push_commit`` names them)."""
    check_push_kwargs(mixin_kwargs)
    kw = dict(mixin_kwargs)
    revision = branch_of(kw.pop("branch", None), kw.pop("revision", None))
    message = kw.pop("commit_message", DEFAULT_COMMIT_MESSAGE)
    create_pr = bool(kw.pop("create_pr", None))
    return push_commit(
        folder, repo_id, revision=revision, message=message, create_pr=create_pr, **kw
    )


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
    onnx: bool = True,
    opset: int = 18,
    model_card_kwargs: dict[str, Any] | None = None,
    **push_kwargs: Any,
) -> CommitInfo:
    """``save_generator`` into a temporary folder, then :func:`push_folder` (one commit, with
    ``push_kwargs`` of :data:`PUSH_KEYWORDS`); returns its ``CommitInfo`` (``str`` = commit
    url, ``.oid``, ``.pr_url``).

    The temporary folder is removed afterwards; the token only goes to ``huggingface_hub``.
    """
    parse_repo_id(repo_id)  # a malformed id fails before the export work
    check_push_kwargs(push_kwargs)
    with tempfile.TemporaryDirectory(prefix="samix-push-") as tmp:
        folder = save_generator(
            gen, Path(tmp) / "generator", onnx=onnx, opset=opset, repo_id=repo_id,
            model_card_kwargs=model_card_kwargs,
        )  # fmt: skip
        return push_folder(folder, repo_id, **push_kwargs)
