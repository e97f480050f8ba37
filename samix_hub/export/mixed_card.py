"""The data set card (``README.md``) of a mixed data set: provenance, counts, usage, citation.

The text depends only on the settings and the shards' counts (no clock, no host name), so two
ranks or two runs with the same inputs write the same bytes. Nothing in it is a local path: the
source data set is named by :func:`samix_hub.data.names.public_dataset_info`: a Hub data set
by its id, local data as ``local data (KIND)`` (no path, no folder or file name),
and the usage snippet names ``ORG/NAME`` until ``push`` puts the repo id in (``export/card_repo.py``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from samix_hub.data.names import local_name, public_dataset_info
from samix_hub.fileio import atomic_write_text
from samix_hub.fileio.guard import loads_bounded
from samix_hub.format.artifact import CARD_NAME
from samix_hub.format.mixed import DATA_DIR, shard_name
from samix_hub.mixing.masks import LAM_MARGIN

__all__ = ["render_card", "write_card", "shard_info", "size_category", "MAX_ERRORS_KEPT"]

MAX_ERRORS_KEPT = 20
#: The mixed images carry the source data set's license, whatever that is.
LICENSE_NAME = "source-data-license"
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
          (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
          (1_000_000_000, "100M<n<1B"))  # fmt: skip


_ABS_PATH = re.compile(r"(?<![\w.:/~-])(?:[A-Za-z]:)?[/\\](?:[^\s/\\:'\"]+[/\\])*([^\s/\\:'\"]+)")


def public_error(message: str, data_spec: str) -> str:
    """A skipped image's error without local paths: a path inside the data root becomes its
    path relative to the root (the root's own name is a local detail too), any other absolute
    path its file name."""
    kind, sep, location = data_spec.partition(":")
    if not sep and (data_spec.endswith(".npz") or "/" in data_spec):  # a bare .npz path
        kind, location = "npz", data_spec
    location = location.rstrip("/\\")
    if location:
        roots = {
            location,
            os.path.expanduser(location),
            os.path.abspath(os.path.expanduser(location)),
        }
        for root in sorted(roots, key=len, reverse=True):
            for sep in ("/", "\\"):
                message = message.replace(root + sep, "")
            message = message.replace(root, local_name(kind))
    return _ABS_PATH.sub(lambda m: m.group(1), message)


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for ``rows`` examples."""
    return next((label for limit, label in _SIZES if rows < limit), "n>1B")


def _front_matter(settings: dict[str, Any], rows: int, name: str, hub_id: str | None) -> str:
    from huggingface_hub import DatasetCardData

    card = DatasetCardData(
        license="other",
        license_name=LICENSE_NAME,
        pretty_name=f"{settings['method']} mixed {name} ({settings['split']})",
        size_categories=[size_category(rows)],
        source_datasets=[hub_id] if hub_id else None,
        task_categories=["image-classification"],
        tags=["mixup", "samix", "data-augmentation", "samix-hub"],
        configs=[
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
        ],
    )
    return card.to_yaml()


CITATION = """@article{li2021samix,
  title={Boosting Discriminative Visual Representation Learning with Scenario-Agnostic Mixup},
  author={Li, Siyuan and Liu, Zicheng and Wang, Zedong and Wu, Di and Liu, Zihan and Li, Stan Z.},
  journal={arXiv preprint arXiv:2111.15454},
  year={2021}
}"""


def _generator_line(gen: dict[str, Any] | None, runtime: str | None) -> str:
    if not gen:
        return "none (a fixed mixing rule, no learned generator)"
    if gen.get("repo_id"):
        rev = f" (revision `{gen['revision']}`)" if gen.get("revision") else ""
        return f"`{gen['repo_id']}` at commit `{gen.get('commit')}`{rev}, runtime {runtime}"
    if gen.get("builtin"):
        sha = f", sha256 `{gen['sha256']}`" if gen.get("sha256") else ""
        return (
            f"built-in `builtin:{gen['builtin']}` of samix-hub {gen.get('samix_hub')}{sha}, "
            f"runtime {runtime}"
        )
    return (
        f"local folder `{gen.get('name', gen.get('source'))}`, sha256 `{gen.get('sha256')}`, "
        f"runtime {runtime}"
    )


#: How each method mixes, in the card's first paragraph.
_RULES = {
    "samix": "a frozen SAMix^P generator's mask (SAMix^P, arXiv 2111.15454), with the "
    f"{LAM_MARGIN:g} margin fallback to MixUp",
    "mixup": "MixUp: a constant λ over the image",
    "cutmix": "CutMix: a box of the partner pasted, λ corrected to the kept area",
}


def _provenance(
    settings: dict[str, Any], totals: dict[str, int], name: str, data: str
) -> list[str]:
    """The card's "Provenance" section: generator, source, classes, method, seed, counts."""
    names = settings.get("class_names") or []
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    return [
        "## Provenance",
        "",
        "| | |",
        "|---|---|",
        f"| generator | {_generator_line(settings.get('generator'), settings.get('runtime'))} |",
        f"| source data set | {name} (`{data}`), split `{settings['split']}`, "
        f"{settings['source_size']} images |",
        f"| classes | {len(names)}: {shown} |",
        f"| method | {settings['method']}, λ ~ Beta(α, α) per image with α = {settings['alpha']} |",
        f"| seed | {settings['seed']} |",
        f"| pairing | one random cycle within each batch of {settings['batch_size']} |",
        f"| mixed images | {totals['rows']} in {totals['shards']} shards "
        f"({settings['num']} planned, {totals['skipped']} skipped for unreadable images) |",
        f"| image format | {settings['image_format']} |",
    ]


def render_card(settings: dict[str, Any], totals: dict[str, int], errors: list[str]) -> str:
    """Markdown with YAML front matter (``configs`` lets ``load_dataset(DIR)`` find the shards)."""
    from samix_hub.export.card_repo import REPO_PLACEHOLDER, repo_marker

    name, hub_id, data = public_dataset_info(settings["data"])
    public = {**settings, "data": data}  # the settings without local paths
    repo = REPO_PLACEHOLDER
    method = settings["method"]
    h, w = settings["image_size"]
    lines = [
        "---",
        _front_matter(settings, totals["rows"], name, hub_id),
        "---",
        "",
        f"# Mixed data set: {method} on {name} ({settings['split']} split)",
        "",
        f"{totals['rows']} mixed {h}x{w} images made offline by `samix-hub mix`. Each image is "
        f"worth `lam` of class `label_a` and `1 - lam` of class `label_b`; it mixes source "
        f"images `index_a` and `index_b` with {_RULES[method]}.",
        "",
        *_provenance(settings, totals, name, data),
        "",
        "## Columns",
        "",
        "`image` (PNG/JPEG), `label_a`, `label_b`, `lam` (float32, share of `label_a`), "
        "`index_a`, `index_b` (positions in the source split)"
        + (", `mask` (float32 H x W, weight of image a)." if settings.get("save_masks") else "."),
        "",
        "## Use",
        "",
        "```python",
        "import datasets",
        f'hf = datasets.load_dataset("{repo}", split="train")  # image, label_a, label_b, lam, ...',
        "",
        "from huggingface_hub import snapshot_download",
        "from samix_hub.data import MixedDataset",
        f'ds = MixedDataset(snapshot_download("{repo}", repo_type="dataset"))',
        "image, label_a, label_b, lam = ds[0]  # image: float32 C x H x W in [0, 1]",
        "# loss = lam * CE(logits, label_a) + (1 - lam) * CE(logits, label_b)",
        "```",
        "",
        "A local copy (the folder `samix-hub mix` wrote, or `samix-hub pull`'s) loads with "
        "`MixedDataset(FOLDER)` or `datasets.load_dataset(FOLDER)`.",
        "",
        "## License",
        "",
        f"The images are mixes of images of {name}: they carry that data set's license "
        f"(`license_name: {LICENSE_NAME}`). The mixing code, samix-hub, is Apache-2.0.",
        "",
    ]
    if errors:
        shown_errors = [public_error(e, settings["data"]) for e in errors]
        lines += ["## Skipped source images", ""] + [f"- {e}" for e in shown_errors] + [""]
    lines += [
        "## Settings",
        "",
        "```json",
        json.dumps(public, indent=2, sort_keys=True),
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
        repo_marker(repo),
        "",
    ]
    return "\n".join(lines)


def shard_info(path: Path) -> dict[str, Any] | None:
    """The ``samix`` metadata of a shard file, or None when it is unreadable."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        return loads_bounded(meta[b"samix"])
    except Exception:
        return None


def write_card(out: str | Path, settings: dict[str, Any], num_shards: int) -> Path:
    """Sum the shards' counts and write ``README.md`` (last: its presence marks completion)."""
    out = Path(out)
    totals = {"rows": 0, "skipped": 0, "shards": num_shards}
    errors: list[str] = []
    for s in range(num_shards):
        info = shard_info(out / DATA_DIR / shard_name(s, num_shards)) or {}
        totals["rows"] += int(info.get("rows", 0))
        totals["skipped"] += int(info.get("skipped", 0))
        errors += info.get("errors", [])
    return atomic_write_text(
        out / CARD_NAME, render_card(settings, totals, errors[:MAX_ERRORS_KEPT])
    )
