"""``samix-hub info``: what an artifact is, from its config, card and files."""

from __future__ import annotations

import json
from typing import Any

import click

from samix_hub.hub.errors import printable

__all__ = ["command"]


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
    from samix_hub.format.repo_ref import BUILTIN_PREFIX, builtin_names

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
    from samix_hub.export.info import describe
    from samix_hub.hub.resolve import resolve_source

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
