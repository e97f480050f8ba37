"""``samix-hub push``: validate an artifact folder and publish it on the Hub in one commit."""

from __future__ import annotations

from pathlib import Path

import click

from samix_hub.cli.options import quiet_option

__all__ = ["command"]


@click.command("push")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("repo_id", metavar="ORG/NAME")
@click.option("--revision", default=None, help="Branch to commit to (created from main if new).")
@click.option("--tag", default=None, help="Tag to create on the new commit, e.g. v1.0.")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option(
    "--repo-type",
    type=click.Choice(["model", "dataset"]),
    default=None,
    help="Defaults to dataset for a mixed data set, model otherwise.",
)
@click.option("--message", "-m", default=None, help="Commit message.")
@click.option("--endpoint", default=None, metavar="URL", help="Hub URL (default: HF_ENDPOINT).")
@click.option(
    "--token",
    default=None,
    help="Hub token (default: HF_TOKEN or the `hf auth login` token). Never printed.",
)
@click.option(
    "--delete",
    is_flag=True,
    help="Mirror FOLDER: also delete remote files it does not have (default: keep them).",
)
@click.option(
    "--create-pr",
    is_flag=True,
    help="Open a pull request against main instead of committing to it; prints its URL.",
)
@quiet_option
def command(
    folder: Path,
    repo_id: str,
    revision: str | None,
    tag: str | None,
    private: bool,
    repo_type: str | None,
    message: str | None,
    endpoint: str | None,
    token: str | None,
    delete: bool,
    create_pr: bool,
    quiet: bool,
) -> None:
    """Publish FOLDER (a generator, backbone or mixed data set) to ORG/NAME.

    The folder is validated first (format version, files, tensor shapes, card); an incomplete
    or invalid artifact is refused before anything is uploaded. The repo is created if needed
    and the folder is uploaded in ONE commit. The push adds and updates files only: remote
    files the folder does not have (a LICENSE added on the Hub) are kept unless --delete.
    Prints the commit URL (with --create-pr: the pull request's) and the commit sha on stdout.

    \b
    Examples:
      samix-hub push export/generator me/samix-generator-cifar10
      samix-hub push export/backbone me/r18-samix --revision dev --tag v0.1
      samix-hub push mixed/ me/cifar10-samix-mixed --repo-type dataset --private
      samix-hub push export/generator me/samix-generator-cifar10 --delete   # mirror the folder
      samix-hub push export/generator someone/their-generator --create-pr
      HF_TOKEN=... samix-hub push export/generator me/gen --endpoint http://localhost:8080
    """
    from samix_hub.hub.transfer import push as hub_push

    # -q: huggingface_hub's upload bars are off while the command runs (_common.quiet_option)
    url, sha = hub_push(
        folder,
        repo_id,
        revision=revision,
        tag=tag,
        private=private,
        repo_type=repo_type,
        message=message,
        endpoint=endpoint,
        token=token,
        delete=delete,
        create_pr=create_pr,
    )
    click.echo(url)
    click.echo(sha)
