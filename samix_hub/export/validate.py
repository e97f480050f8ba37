"""Artifact folders (docs/artifacts.md): what kind a folder is, and whether it is complete.

Kinds: ``samix-generator`` (config.json + generator.safetensors [+ onnx/generator.onnx] +
README.md), ``samix-backbone`` (timm Hub layout: config.json + model.safetensors
[+ onnx/model.onnx] + README.md) and ``samix-mixed-dataset`` (data/*.parquet shards + README.md).
Validation never unpickles anything: weights are read with safetensors only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from samix_hub.errors import ArtifactError, NotAnArtifactError, UserError
from samix_hub.export.schema import check_backbone_config, generator_config_from_dict
from samix_hub.fileio.guard import loads_bounded, read_json_bounded
from samix_hub.format.artifact import (
    BACKBONE,
    BACKBONE_FORMAT_VERSION,
    BACKBONE_ONNX,
    BACKBONE_WEIGHTS,
    CARD_NAME,
    CONFIG_NAME,
    GENERATOR,
    GENERATOR_ONNX,
    GENERATOR_WEIGHTS,
    MIXED_DATASET,
    ONNX_INPUTS,
    PICKLE_SUFFIXES,
)
from samix_hub.format.limits import MAX_CLASSES, DataSpecError, check_pixels
from samix_hub.format.mixed import SHARD_RE
from samix_hub.models.generator import GeneratorNet

__all__ = [
    "GENERATOR",
    "BACKBONE",
    "MIXED_DATASET",
    "detect_kind",
    "validate_artifact",
    "required_files",
    "PICKLE_SUFFIXES",
    "BACKBONE_FORMAT_VERSION",
    "backbone_meta",
    "list_files",
    "is_plain_timm",
]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing")
    try:
        data = read_json_bounded(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _pickle_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES
    )


def detect_kind(path: str | Path) -> str:
    """The artifact kind of a folder, from its files; an error names what is wrong.

    A timm folder (``timm.models.save_for_hf`` / ``push_to_hf_hub``) with ``model.safetensors``
    beside ``pytorch_model.bin`` is a backbone: its pickles are ignored, never read. Pickle
    weights without safetensors are refused with a one-line error saying to convert them.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise NotAnArtifactError(f"{folder}: no such folder")
    pickles = _pickle_files(folder)
    if (folder / "data").is_dir() and any((folder / "data").glob("*.parquet")) and not pickles:
        return MIXED_DATASET
    cfg_path = folder / CONFIG_NAME
    if pickles:
        cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
        timm_layout = cfg.get("kind") != GENERATOR and "architecture" in cfg
        if timm_layout and (folder / BACKBONE_WEIGHTS).is_file():
            return BACKBONE  # the safetensors file is used; the pickles are never opened
        if timm_layout:
            raise ArtifactError(
                f"{folder}: timm weights only as pickles ({', '.join(pickles[:3])}); samix-hub "
                f"never loads pickles: convert them to safetensors ({BACKBONE_WEIGHTS}, e.g. "
                "timm.models.save_for_hf(model, DIR, safe_serialization=True))"
            )
        raise ArtifactError(
            f"{folder}: contains pickle weights {pickles[:3]}; samix-hub only loads safetensors"
        )
    if not cfg_path.is_file():
        raise NotAnArtifactError(
            f"{folder}: not a samix-hub artifact (no config.json, no data/*.parquet)"
        )
    cfg = _read_json(cfg_path)
    if cfg.get("kind") == GENERATOR:
        return GENERATOR
    if "architecture" in cfg:
        return BACKBONE
    raise NotAnArtifactError(f"{cfg_path}: neither a samix-generator nor a timm backbone config")


def is_plain_timm(folder: str | Path) -> bool:
    """A backbone folder timm wrote (no ``samix_hub`` section in its ``config.json``)."""
    cfg_path = Path(folder) / CONFIG_NAME
    try:
        cfg = read_json_bounded(cfg_path)
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "architecture" in cfg and not cfg.get("samix_hub")


def required_files(kind: str, runtime: str = "all") -> list[str]:
    """Files an artifact of ``kind`` must hold for ``runtime`` (torch, onnx or all)."""
    if runtime not in ("torch", "onnx", "all"):
        raise UserError(f"unknown runtime {runtime!r} (torch, onnx or all)")
    if kind == GENERATOR:
        torch_files, onnx_files = [GENERATOR_WEIGHTS], [GENERATOR_ONNX]
    elif kind == BACKBONE:
        torch_files, onnx_files = [BACKBONE_WEIGHTS], [BACKBONE_ONNX]
    elif kind == MIXED_DATASET:
        return [CARD_NAME]
    else:
        raise ArtifactError(f"unknown artifact kind {kind!r}")
    files = [CONFIG_NAME]
    if runtime in ("torch", "all"):
        files += torch_files
    if runtime in ("onnx", "all"):
        files += onnx_files
    return files


def _check_safetensors(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # SafetensorError on truncated/corrupt files
        raise ArtifactError(f"{path}: unreadable safetensors file ({exc})") from None
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            f"{path}: tensors do not match config.json (missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    for key, shape in expected.items():
        if shapes[key] != shape:
            raise ArtifactError(
                f"{path}: tensor {key!r} has shape {shapes[key]}, config expects {shape}"
            )
    # Reading every tensor catches truncation that the header alone does not show.
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
    except Exception as exc:
        raise ArtifactError(f"{path}: corrupt or truncated ({exc})") from None
    check_finite(tensors, path)


def check_finite(tensors: dict[str, Any], path: str | Path) -> None:
    """Refuse weights holding NaN or infinity (a diverged run mixes all-black images)."""
    import torch

    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ArtifactError(
                f"{path}: tensor {key!r} has {bad} non-finite value(s) (NaN or inf); "
                "the weights are unusable"
            )


def _validate_generator(folder: Path, runtime: str) -> None:
    cfg_path = folder / CONFIG_NAME
    try:
        config = generator_config_from_dict(_read_json(cfg_path), source=str(cfg_path))
        if runtime in ("torch", "all"):
            expected = {k: tuple(v.shape) for k, v in GeneratorNet(config).state_dict().items()}
            _check_safetensors(folder / GENERATOR_WEIGHTS, expected)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None


def backbone_meta(cfg: dict[str, Any], cfg_path: str | Path) -> dict[str, Any]:
    """The ``samix_hub`` section of a backbone config ({} for a plain timm repo); checks version."""
    meta = cfg.get("samix_hub") or {}
    if not isinstance(meta, dict):
        raise ArtifactError(f"{cfg_path}: 'samix_hub' must be an object")
    version = meta.get("format_version", BACKBONE_FORMAT_VERSION)
    if version != BACKBONE_FORMAT_VERSION:
        raise ArtifactError(
            f"{cfg_path}: unknown backbone format_version {version!r} "
            f"(this samix-hub reads version {BACKBONE_FORMAT_VERSION})"
        )
    return meta


def _check_onnx_finite(model: Any, path: Path) -> None:
    """The graph's floating-point initializers (its weights) hold no NaN or infinity."""
    import numpy as np
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise ArtifactError(
                f"{path}: initializer {tensor.name!r} has {bad} non-finite value(s) "
                "(NaN or inf); the weights are unusable"
            )


def _check_onnx_file(path: Path, kind: str) -> None:
    """Parse the graph (no pickles, single file) and check its input names."""
    from samix_hub.export.onnx import check_onnx

    model = check_onnx(path, full=False)
    _check_onnx_finite(model, path)
    names = tuple(i.name for i in model.graph.input)
    if names != ONNX_INPUTS[kind]:
        raise ArtifactError(f"{path}: graph inputs {names}, expected {ONNX_INPUTS[kind]}")


def _validate_backbone(folder: Path, runtime: str) -> None:
    import timm

    from samix_hub.models import backbones as _backbones  # noqa: F401  (registers the CIFAR backbones)

    cfg_path = folder / CONFIG_NAME
    cfg = _read_json(cfg_path)
    backbone_meta(cfg, cfg_path)
    # Every field's type and range; also refuses configs that name files, URLs or other repos.
    in_chans = check_backbone_config(cfg, str(cfg_path))
    arch = cfg["architecture"]
    # timm's writer records the constructor arguments (``model_args``); build as timm would.
    kwargs = dict(cfg.get("model_args") or {})
    kwargs.setdefault("num_classes", cfg["num_classes"])
    kwargs.setdefault("in_chans", in_chans)
    if runtime in ("torch", "all"):
        try:
            model = timm.create_model(arch, pretrained=False, **kwargs)
        except (RuntimeError, TypeError, ValueError, KeyError, AssertionError) as exc:
            raise ArtifactError(
                f"{cfg_path}: timm cannot build architecture {arch!r} with these model_args "
                f"({_first_line(exc)})"
            ) from None
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        _check_safetensors(folder / BACKBONE_WEIGHTS, expected)


#: The card's count line (``data/mixed_card.py:render_card``): "| mixed images | N in S shards".
_CARD_COUNT_RE = re.compile(r"^\| mixed images \| (\d+) in (\d+) shards", re.MULTILINE)


def _shard_rows(shard: Path) -> int:
    """Rows of one shard, after checking it opens and its recorded count matches."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(shard)
        schema = pq.read_schema(shard)
    except Exception as exc:  # ArrowInvalid on a truncated or foreign file
        raise ArtifactError(
            f"{shard}: unreadable Parquet shard ({_first_line(exc)}); truncated?"
        ) from None
    rows = int(meta.num_rows)
    info = (schema.metadata or {}).get(b"samix")
    if info is not None:
        try:
            recorded = loads_bounded(info).get("rows")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise ArtifactError(f"{shard}: corrupt 'samix' metadata") from None
        if recorded is not None and recorded != rows:
            raise ArtifactError(f"{shard}: holds {rows} rows, its metadata records {recorded}")
    # Reading every column chunk catches damage inside the file that the footer does not show.
    try:
        table = pq.ParquetFile(shard).read()
        table.validate(full=True)
    except Exception as exc:
        raise ArtifactError(f"{shard}: corrupt Parquet data ({_first_line(exc)})") from None
    _check_rows(shard, table, schema.metadata or {})
    return rows


def _class_count(shard: Path, metadata: dict[bytes, bytes]) -> int:
    """The class count the shard's ``datasets`` features name (``label_a``'s names)."""
    try:
        info = loads_bounded(metadata.get(b"huggingface", b"{}"))
        names = info.get("info", {}).get("features", {}).get("label_a", {}).get("names")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise ArtifactError(f"{shard}: corrupt 'huggingface' metadata") from None
    if not isinstance(names, list) or not names:
        return MAX_CLASSES
    return len(names)


def _check_rows(shard: Path, table: Any, metadata: dict[bytes, bytes]) -> None:
    """Every row in range: labels in 0..K-1, λ finite in [0, 1], an image whose header names
    a format PIL reads and a size within ``data.limits.MAX_SOURCE_PIXELS`` (nothing decoded)."""
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    names = set(table.column_names)
    missing = sorted({"image", "label_a", "label_b", "lam"} - names)
    if missing:
        raise ArtifactError(f"{shard}: lacks the column(s) {', '.join(missing)}")
    classes = _class_count(shard, metadata)
    for col in ("label_a", "label_b"):
        try:
            labels = np.asarray(table.column(col).to_numpy(zero_copy_only=False), dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise ArtifactError(f"{shard}: column {col} is not integer labels") from None
        bad = np.flatnonzero((labels < 0) | (labels >= classes))
        if bad.size:
            raise ArtifactError(
                f"{shard}: row {int(bad[0])}: {col} {int(labels[bad[0]])} is outside 0..{classes - 1}"
            )
    try:
        lam = np.asarray(table.column("lam").to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError):
        raise ArtifactError(f"{shard}: column lam is not numbers") from None
    bad = np.flatnonzero(~(np.isfinite(lam) & (lam >= 0) & (lam <= 1)))
    if bad.size:
        raise ArtifactError(f"{shard}: row {int(bad[0])}: lam {lam[bad[0]]} is not in [0, 1]")
    images = table.column("image").combine_chunks()
    data = images.field("bytes") if hasattr(images, "field") else images
    for row, blob in enumerate(data.to_pylist()):
        where = f"{shard}: row {row}: image"
        if not isinstance(blob, bytes):
            raise ArtifactError(f"{where} is missing")
        try:
            with Image.open(io.BytesIO(blob)) as im:  # reads the header only
                check_pixels(im.size, where)
        except DataSpecError as exc:
            raise ArtifactError(str(exc)) from None
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise ArtifactError(f"{where} is not a readable image ({_first_line(exc)})") from None


def _validate_mixed(folder: Path) -> None:
    """Complete shard set; every shard opens and its rows match the card's count."""
    shards = sorted((folder / "data").glob("*.parquet"))
    totals = set()
    indices = set()
    for shard in shards:
        m = SHARD_RE.match(shard.name)
        if not m:
            raise ArtifactError(f"{shard}: shard name is not train-NNNNN-of-NNNNN.parquet")
        indices.add(int(m.group(1)))
        totals.add(int(m.group(2)))
    if len(totals) != 1:
        raise ArtifactError(f"{folder / 'data'}: shards disagree on their count {sorted(totals)}")
    total = totals.pop()
    missing = sorted(set(range(total)) - indices)
    if missing:
        raise ArtifactError(
            f"{folder / 'data'}: incomplete, shards {missing[:5]} of {total} missing"
        )
    rows = sum(_shard_rows(shard) for shard in shards)
    card = folder / CARD_NAME
    if card.is_file():
        try:
            text = card.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{card}: unreadable card ({exc})") from None
        m = _CARD_COUNT_RE.search(text)
        if m and (int(m.group(1)), int(m.group(2))) != (rows, total):
            raise ArtifactError(
                f"{card}: records {m.group(1)} rows in {m.group(2)} shards, the shards hold "
                f"{rows} rows in {total}"
            )


def validate_artifact(path: str | Path, runtime: str = "all") -> str:
    """Check a folder is a complete artifact for ``runtime``; return its kind.

    ``runtime="all"`` needs every file of the kind, except the ONNX graph of a plain timm
    backbone folder (timm publishes none; when there is one it is checked).

    Raises :class:`~samix_hub.errors.ArtifactError` naming the file that is missing or wrong.
    """
    folder = Path(path)
    kind = detect_kind(folder)
    if (
        kind == BACKBONE
        and runtime == "all"
        and not (folder / BACKBONE_ONNX).is_file()
        and is_plain_timm(folder)
    ):
        runtime = "torch"  # timm publishes no ONNX graph: "everything it has" is the weights
    for name in required_files(kind, runtime):
        if not (folder / name).is_file():
            raise ArtifactError(f"{folder / name}: missing ({kind} artifact, runtime {runtime})")
    if kind == GENERATOR:
        _validate_generator(folder, runtime)
    elif kind == BACKBONE:
        _validate_backbone(folder, runtime)
    else:
        _validate_mixed(folder)
    if kind in ONNX_INPUTS and runtime in ("onnx", "all"):
        onnx_file = required_files(kind, "onnx")[-1]
        _check_onnx_file(folder / onnx_file, kind)
        _check_onnx_metadata(folder, folder / onnx_file, kind)
        weights = required_files(kind, "torch")[-1]
        if runtime == "all" or (folder / weights).is_file():
            # both files present: the graph must compute what the weights do (a pull for
            # onnxruntime fetches the weights too, for this check; hub.py:allow_patterns)
            _check_onnx_parity(folder, folder / onnx_file, kind)
    return kind


def _check_onnx_metadata(folder: Path, path: Path, kind: str) -> None:
    """The graph's ``samix_hub.*`` metadata (when it has any) agrees with ``config.json``."""
    import numpy as np

    from samix_hub.export.onnx_metadata import read_metadata

    try:
        meta = read_metadata(path)
    except Exception as exc:  # onnx's DecodeError and friends
        raise ArtifactError(f"{path}: unreadable ONNX metadata ({_first_line(exc)})") from None
    if not meta:
        return  # graphs written before the metadata existed
    cfg = _read_json(folder / CONFIG_NAME)
    if kind == GENERATOR:
        expected = {
            "kind": GENERATOR,
            "mean": cfg.get("mean"),
            "std": cfg.get("std"),
            "in_chans": cfg.get("in_chans"),
            "input_size": cfg.get("input_size"),
        }
    else:
        pcfg = cfg.get("pretrained_cfg") or {}
        expected = {
            "kind": BACKBONE,
            "mean": pcfg.get("mean"),
            "std": pcfg.get("std"),
            "input_size": pcfg.get("input_size"),
        }
    for key, want in expected.items():
        if want is None or key not in meta:
            continue
        got = meta[key]
        if isinstance(want, str) or isinstance(got, str):
            same = got == want
        else:
            try:
                a, b = np.asarray(got, float), np.asarray(want, float)
                same = a.shape == b.shape and bool(np.allclose(a, b, atol=1e-6))
            except (TypeError, ValueError):
                same = False
        if not same:
            raise ArtifactError(
                f"{path}: ONNX metadata samix_hub.{key} {got!r} differs from config.json {want!r}"
            )


def _check_onnx_parity(folder: Path, path: Path, kind: str) -> None:
    """Run the graph and the safetensors weights on one fixed probe batch
    (``onnx.generator_parity`` / ``backbone_parity`` with ``probe``, seed 0); refuse a
    difference above ``onnx.PARITY_TOL``. ``samix-hub export`` runs the full set of cases."""
    from safetensors.torch import load_file

    from samix_hub.export.onnx import (
        PARITY_TOL,
        OnnxBackbone,
        OnnxGenerator,
        backbone_parity,
        generator_parity,
    )

    cfg = _read_json(folder / CONFIG_NAME)
    try:
        if kind == GENERATOR:
            config = generator_config_from_dict(cfg, source=str(folder / CONFIG_NAME))
            gen = GeneratorNet(config)
            gen.load_state_dict(load_file(str(folder / GENERATOR_WEIGHTS)))
            gen.eval()
            parity = generator_parity(gen, OnnxGenerator(path, config, device="cpu"), probe=True)
        else:
            import timm

            kwargs = dict(cfg.get("model_args") or {})
            kwargs.setdefault("num_classes", cfg["num_classes"])
            pcfg = cfg.get("pretrained_cfg") or {}
            input_size = pcfg.get("input_size") or [3, 224, 224]
            kwargs.setdefault("in_chans", int(input_size[0]))
            model = timm.create_model(cfg["architecture"], pretrained=False, **kwargs)
            model.load_state_dict(load_file(str(folder / BACKBONE_WEIGHTS)))
            parity = backbone_parity(
                model.eval(),
                OnnxBackbone(path, cfg, device="cpu"),
                pcfg.get("mean") or [0.0] * int(input_size[0]),
                pcfg.get("std") or [1.0] * int(input_size[0]),
                input_size,
                probe=True,
            )
    except ArtifactError:
        raise
    except Exception as exc:  # onnxruntime refusing the graph, a shape that does not fit
        raise ArtifactError(
            f"{path}: cannot be run against the safetensors weights ({_first_line(exc)})"
        ) from None
    for key, value in parity.items():
        if not value <= PARITY_TOL[key]:
            raise ArtifactError(
                f"{path}: computes another function than the safetensors weights "
                f"(max |onnx - torch| on {key} {value:.2e} > {PARITY_TOL[key]:.0e}); re-export"
            )


def list_files(path: str | Path) -> dict[str, int]:
    """Relative path -> size in bytes of every file in an artifact folder (hidden ones skipped)."""
    folder = Path(path)
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }
