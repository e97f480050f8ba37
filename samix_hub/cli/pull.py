"""``samix-hub pull``: download a verified artifact from the Hub and print its local path."""

from __future__ import annotations

from pathlib import Path

import click

from samix_hub.cli.options import quiet_option

__all__ = ["command"]


@click.command("pull")
@click.argument("src", metavar="ORG/NAME[@REV]")
@click.option(
    "--dir",
    "local_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also copy the artifact into this folder (empty, new, or an earlier pull of it).",
)
@click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx", "all"]),
    default="torch",
    show_default=True,
    help="Download only what this runtime needs (all: every file but pickles).",
)
@click.option(
    "--repo-type",
    type=click.Choice(["auto", "model", "dataset"]),
    default="auto",
    show_default=True,
    help="auto tries a model repo, then a dataset repo.",
)
@click.option("--endpoint", default=None, metavar="URL", help="Hub URL (default: HF_ENDPOINT).")
@click.option("--token", default=None, help="Hub token for private repos. Never printed.")
@click.option("--offline", is_flag=True, help="Use the local cache only (also HF_HUB_OFFLINE=1).")
@click.option(
    "--force",
    is_flag=True,
    help="Write into a --dir that holds other files (they are kept; same-named files replaced).",
)
@quiet_option
def command(
    src: str,
    local_dir: Path | None,
    runtime: str,
    repo_type: str,
    endpoint: str | None,
    token: str | None,
    offline: bool,
    force: bool,
    quiet: bool,
) -> None:
    """Download ORG/NAME[@REV] (branch, tag or commit sha), verify it, print its local path.

    Only the files the runtime needs are downloaded. Every file is checked against the Hub's
    checksum, repos with pickle weights are refused, and the artifact is validated (format
    version, expected files, tensor shapes vs config). The path goes to stdout, the resolved
    commit sha to stderr; pin it with ORG/NAME@SHA for reproducible runs. --dir must be empty,
    new, or an earlier pull of the same repo (then it is replaced atomically); a folder with
    other files is refused unless --force, and files the pull did not write are never deleted.

    \b
    Examples:
      samix-hub pull me/samix-generator-cifar10
      samix-hub pull me/samix-generator-cifar10@v0.1 --runtime onnx --dir gen/
      samix-hub pull me/r18-samix@3f2a...e9 --offline
      samix-hub mix --generator "$(samix-hub pull me/gen)" --data digits --out mixed/
    """
    from samix_hub.format.repo_ref import parse_repo_id
    from samix_hub.hub.transfer import pull as hub_pull

    repo_id, revision = parse_repo_id(src)
    resolved = hub_pull(
        repo_id,
        revision=revision,
        runtime=runtime,
        local_dir=local_dir,
        endpoint=endpoint,
        token=token,
        offline=True if offline else None,
        repo_type=None if repo_type == "auto" else repo_type,
        force=force,
    )
    click.echo(
        f"{repo_id}@{resolved.revision}: commit {resolved.commit} ({resolved.kind})", err=True
    )
    click.echo(str(resolved.path))
