"""``samix-hub info``: what an artifact is, from its config, card and files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from ..artifacts import (
    BACKBONE,
    GENERATOR,
    MIXED_DATASET,
    detect_kind,
    list_files,
    validate_artifact,
)
from ..display import printable
from ..errors import ArtifactError

__all__ = ["command", "describe"]


def _params(path: Path) -> int | None:
    """Parameter count from a safetensors header (no tensor is read)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:
        return None


def _card(folder: Path) -> dict[str, Any]:
    from huggingface_hub import metadata_load

    readme = folder / "README.md"
    try:
        return (metadata_load(readme) or {}) if readme.is_file() else {}
    except Exception:
        return {}


def _obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else {} (a broken config is described, not raised)."""
    return value if isinstance(value, dict) else {}


def _seq(value: Any) -> list[Any]:
    """``value`` when it is a JSON list, else []."""
    return value if isinstance(value, list) else []


def _results(meta: dict[str, Any]) -> list[str]:
    out = []
    for model in map(_obj, _seq(meta.get("model-index"))):
        for res in map(_obj, _seq(model.get("results"))):
            ds = _obj(res.get("dataset"))
            for m in map(_obj, _seq(res.get("metrics"))):
                out.append(
                    f"{m.get('name') or m.get('type')}: {m.get('value')} "
                    f"({ds.get('name')}, {ds.get('split', 'test')})"
                )
    return out


def _measured(prov: dict[str, Any]) -> list[str]:
    """A generator's own mask statistics from its provenance (no Hub metric: not in the card's
    model-index), as :func:`_results` words them."""
    from ..cards import GENERATOR_METRICS, dataset_info

    measured = prov.get("measured")
    if not isinstance(measured, dict):
        return []
    values = measured.get("values") or {}
    data = dataset_info(prov.get("data"))[0]
    return [
        f"{label}: {values[key]} ({data}, test)"
        for key, label, _ in GENERATOR_METRICS
        if key in values
    ]


def describe(folder: str | Path, validate: bool = True) -> dict[str, Any]:
    """A JSON-serialisable summary of an artifact folder."""
    folder = Path(folder)
    kind = detect_kind(folder)
    info: dict[str, Any] = {"kind": kind, "path": str(folder)}
    if validate:
        try:
            # torch first: a broken config or weights is named before a missing ONNX graph.
            validate_artifact(folder, "torch")
            validate_artifact(folder, "all")
            info["valid"] = True
        except ArtifactError as exc:
            info["valid"] = False
            info["error"] = str(exc)
    cfg = _obj(json.loads((folder / "config.json").read_text())) if kind != MIXED_DATASET else {}
    meta = _obj(_card(folder))
    if kind == GENERATOR:
        mixer = _obj(cfg.get("mixer"))
        info["architecture"] = (
            f"{cfg.get('backbone')} to stage {cfg.get('stage')} + {mixer.get('variant')} mixer "
            f"({mixer.get('in_channels')} channels)"
        )
        size = _seq(cfg.get("input_size"))
        info["input"] = f"{cfg.get('in_chans')} x {' x '.join(map(str, size))}, in [0, 1]"
        info["normalisation"] = {"mean": cfg.get("mean"), "std": cfg.get("std")}
        info["parameters"] = _params(folder / "generator.safetensors")
        prov = dict(_obj(cfg.get("provenance")))
        stats = prov.pop("mask_statistics", None) or cfg.get("mask_statistics")
        if isinstance(stats, dict):
            info["mask_statistics"] = stats
        info["provenance"] = prov
        info["format_version"] = cfg.get("format_version")
    elif kind == BACKBONE:
        pcfg = _obj(cfg.get("pretrained_cfg"))
        info["architecture"] = f"{cfg.get('architecture')} ({cfg.get('num_classes')} classes)"
        info["input"] = " x ".join(map(str, _seq(pcfg.get("input_size"))))
        info["normalisation"] = {"mean": pcfg.get("mean"), "std": pcfg.get("std")}
        info["labels"] = _seq(cfg.get("label_names")) or None
        info["parameters"] = _params(folder / "model.safetensors")
        samix = _obj(cfg.get("samix_hub"))
        info["provenance"] = _obj(samix.get("provenance"))
        info["format_version"] = samix.get("format_version")
    else:
        import pyarrow.parquet as pq

        rows = 0
        for shard in sorted((folder / "data").glob("*.parquet")):
            try:
                rows += pq.read_metadata(shard).num_rows
            except Exception as exc:
                raise ArtifactError(f"{shard}: unreadable parquet ({exc})") from None
        info["rows"] = rows
        info["provenance"] = {k: v for k, v in meta.items() if k not in ("configs", "dataset_info")}
    info["card"] = {
        k: meta.get(k) for k in ("license", "tags", "datasets", "base_model") if k in meta
    }
    info["results"] = _results(meta) or _measured(info.get("provenance") or {})
    info["files"] = list_files(folder)
    return info


def _mask_line(stats: dict[str, Any]) -> str:
    """One line of measured mask statistics (``benchmarks/mask_lambda.py:mask_statistics``)."""

    def num(key: str) -> str:
        value = stats.get(key)
        return f"{value:.3f}" if isinstance(value, (int, float)) else "?"

    where = ""
    if isinstance(stats.get("images"), int):
        where = f" ({stats['images']:,} {stats.get('split', 'test')} images"
        where += f" of {stats['data']})" if stats.get("data") else ")"
    return (
        f"slope {num('slope')} (ideal 1), spatial std {num('spatial_std')}, "
        f"spread {num('spread')}{where}"
    )


def _print(info: dict[str, Any]) -> None:
    width = 14

    def _line(text: str) -> None:
        click.echo(printable(text))  # values come from the artifact: no control characters

    for key in ("kind", "path", "source", "commit", "architecture", "input", "parameters"):
        if info.get(key) is not None:
            value = info[key]
            if key == "parameters":
                value = f"{value:,}"
            _line(f"{key + ':':<{width}} {value}")
    if "valid" in info:
        _line(f"{'valid:':<{width}} " + ("yes" if info["valid"] else f"NO: {info['error']}"))
    if info.get("normalisation"):
        n = info["normalisation"]
        _line(f"{'normalise:':<{width}} mean {n['mean']}, std {n['std']}")
    if info.get("labels"):
        labels = info["labels"]
        shown = ", ".join(map(str, labels[:10])) + (" ..." if len(labels) > 10 else "")
        _line(f"{'labels:':<{width}} {shown}")
    if info.get("rows") is not None:
        _line(f"{'rows:':<{width}} {info['rows']}")
    if info.get("provenance"):
        prov = ", ".join(f"{k}={v}" for k, v in info["provenance"].items() if v is not None)
        _line(f"{'provenance:':<{width}} {prov}")
    if info.get("mask_statistics"):
        _line(f"{'mask stats:':<{width}} {_mask_line(info['mask_statistics'])}")
    for key, value in info.get("card", {}).items():
        _line(f"{key + ':':<{width}} {value}")
    _line(f"{'results:':<{width}} " + ("; ".join(info["results"]) or "none recorded"))
    _line("files:")
    for name, size in info["files"].items():
        _line(f"  {name:<40} {size:>12,} B")


def _no_artifact(as_json: bool) -> None:
    from ..sources import BUILTIN_PREFIX, builtin_names

    if as_json:
        click.echo(json.dumps({"builtin": [BUILTIN_PREFIX + n for n in builtin_names()]}))
        return
    click.echo("usage: samix-hub info SRC   (a folder, ORG/NAME[@REV] or builtin:NAME)")
    names = builtin_names()
    click.echo("built-in generators (offline, shipped with samix-hub):")
    for name in names:
        click.echo(f"  {BUILTIN_PREFIX}{name}")
    if not names:
        click.echo("  none installed")


@click.command("info")
@click.argument("src", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-validate", is_flag=True, help="Skip the full validation (faster).")
def command(src: str | None, as_json: bool, no_validate: bool) -> None:
    """Show what an artifact is: kind, architecture, sizes, provenance, results and files.

    \b
    SRC is a local artifact folder (generator, backbone or mixed data set), a Hub repo id
    ORG/NAME[@REV] (downloaded or read from the cache first) or builtin:NAME, a generator
    shipped inside samix-hub (without SRC, info lists them). Validation problems are shown,
    not raised, so a broken folder can still be inspected.

    \b
    Examples:
      samix-hub info release/generator
      samix-hub info ORG/samix-generator-r18-cifar10@v1
      samix-hub info builtin:cifar10-small           # shipped, offline
      samix-hub info release/backbone --json | jq .results
    """
    from ..sources import resolve_source

    if not src:
        _no_artifact(as_json)
        return
    resolved = resolve_source(src, runtime="all")
    info = describe(resolved.path, validate=not no_validate)
    if resolved.repo_id:
        info["source"] = f"{resolved.repo_id}@{resolved.revision or 'main'}"
        info["commit"] = resolved.commit
    elif resolved.builtin:
        prov = resolved.provenance()
        info["source"] = f"builtin:{resolved.builtin} (samix-hub {prov['samix_hub']})"
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        _print(info)
