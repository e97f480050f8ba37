"""The ``samix-hub`` command group.

Each sub-command lives in its own module under :mod:`samix_hub.cli` and exposes a
``click.Command`` named ``command``; this group discovers them, so commands are added without
touching this file. Options also read ``SAMIX_<COMMAND>_<OPTION>`` environment variables.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from samix_hub._version import __version__
from samix_hub.errors import Interrupted, UserError
from samix_hub.fileio import fault_of

__all__ = ["cli", "main"]

CONTEXT = {
    "help_option_names": ["-h", "--help"],
    "auto_envvar_prefix": "SAMIX",
    "max_content_width": 100,
}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="samix-hub")
def cli() -> None:
    """samix-hub: learned mixup (SAMix / SAMix^P, arXiv 2111.15454) for computer vision.

    \b
    Train mixup generators and backbones, export them to safetensors + ONNX, publish them on
    the Hugging Face Hub, mix data sets offline and fine-tune with a frozen generator.

    \b
    Examples:
      samix-hub demo                          # the whole pipeline offline, on CPU, in minutes
      samix-hub pull ORG/samix-generator      # fetch a generator, print its local path
      samix-hub mix --generator ORG/gen --data cifar10:~/data --out mixed/
      samix-hub COMMAND --help                # every command documents itself
    """


def _register_commands() -> None:
    from samix_hub.cli import demo, export, finetune, import_openmixup, info, mix, pull, push, train
    from samix_hub.cli import eval as eval_command

    modules = (demo, eval_command, export, finetune, import_openmixup, info, mix, pull, push, train)
    for module in modules:
        cli.add_command(module.command)


_register_commands()


class _Never(Exception):
    pass


#: click >= 8.2 raises this for a bare group or command; it shows the help, not one line.
_NO_ARGS_IS_HELP: type[Exception] = getattr(click.exceptions, "NoArgsIsHelpError", _Never)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors and storage faults (disk full, read-only or unwritable
    output) become one line on stderr and a non-zero exit; Ctrl-C exits with 130."""
    from samix_hub.format.limits import DataSpecError
    from samix_hub.hub.errors import printable

    try:
        cli.main(args=argv, prog_name="samix-hub", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except _NO_ARGS_IS_HELP as exc:
        exc.show()  # bare command: its help, as click prints it
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # One line (usage errors exit 2): the message names the option and the value.
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message += f" (see `{exc.ctx.command_path} --help`)"
        click.echo(f"Error: {printable(message)}", err=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        click.echo(f"Interrupted; {printable(exc)}", err=True)
        sys.exit(exc.exit_code)
    except (UserError, DataSpecError, FileNotFoundError) as exc:
        if os.environ.get("SAMIX_DEBUG"):
            raise
        click.echo(f"Error: {printable(exc)}", err=True)  # one line, no control characters
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        click.echo("Interrupted; re-run the same command to resume.", err=True)
        sys.exit(130)
    except Exception as exc:
        fault = fault_of(exc)
        if fault is None or os.environ.get("SAMIX_DEBUG"):
            raise
        click.echo(f"Error: {printable(_fault_message(fault))}", err=True)
        sys.exit(1)


def _fault_message(exc: OSError) -> str:
    """One line for a storage fault: the path, then what went wrong."""
    reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    if exc.errno == errno.ENOSPC or "No space left" in str(exc):
        reason = "no space left on the device; free some space and run the same command again"
    elif exc.errno == errno.EDQUOT:
        reason = "disk quota exceeded; free some space and run the same command again"
    elif exc.errno == errno.EFBIG:
        reason = "file too large for this process (see `ulimit -f`)"
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}cannot write: {reason}"
