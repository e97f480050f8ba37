"""The command line answers at once, ``-q`` silences the libraries, and optional packages are
named by their extra.

``samix-hub --help`` and every ``COMMAND --help`` must not import torch or timm (checked
through ``sys.modules`` in a fresh interpreter; the CPU time itself is measured by
``benchmarks/cli_startup.py``, not here). ``import samix_hub`` is lazy, yet the public names
resolve and the CIFAR backbones are in timm's registry whichever of the two is imported first.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from cli_helpers import run_cli

sys.path.insert(0, str(Path(__file__).parent))  # fakehub, as tests/test_hub.py imports it

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "torchvision", "numpy", "huggingface_hub", "safetensors", "PIL")


def python_env(
    code: str, extra_env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter that imports this checkout's samix_hub; the ``HF_*`` and
    ``SAMIX_*`` variables of this process are left out, ``extra_env`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAMIX_", "HF_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return python_env(code, {}, *args)


def test_help_and_version_import_no_heavy_module() -> None:
    """Every help screen in one interpreter: what ``sys.modules`` holds afterwards."""
    code = f"""
import json, sys
from samix_hub.cli.main import cli, main
screens = [["--version"], ["--help"]] + [[name, "--help"] for name in sorted(cli.commands)]
shown = []
for argv in screens:
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, (argv, exc.code)
    shown.append(argv)
print(json.dumps({{"shown": shown, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    commands = {argv[0] for argv in result["shown"] if len(argv) == 2}
    assert {"train", "finetune", "mix", "export", "push", "pull", "info", "eval"} <= commands
    assert result["heavy"] == []


def test_import_is_lazy_and_the_public_names_resolve() -> None:
    code = """
import sys
import samix_hub
assert samix_hub.__version__ and "torch" not in sys.modules, sorted(sys.modules)
from samix_hub import SAMixUp, Generator, load_generator, load_backbone, MixerConfig
from samix_hub.models import Mixer
assert samix_hub.Mixer is Mixer and SAMixUp.__module__ == "samix_hub.hub.api"
assert set(samix_hub.__all__) <= set(dir(samix_hub))
try:
    samix_hub.no_such_name
except AttributeError as exc:
    assert "no_such_name" in str(exc)
else:
    raise AssertionError("no AttributeError")
print("ok")
"""
    proc = python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize(
    "imports",
    [
        "import samix_hub\nimport timm",  # timm after: the import hook registers
        "import timm\nimport samix_hub",  # timm before: registered at once
        "import samix_hub\nfrom timm.models import create_model as _c\nimport timm",
    ],
)
def test_cifar_backbones_are_in_timm_after_import_samix_hub(imports: str) -> None:
    code = f"""
import sys
{imports}
model = timm.create_model("resnet18_cifar_w16", num_classes=3)
hooks = [f for f in sys.meta_path if type(f).__module__ == "samix_hub"]
print(type(model).__name__, model.num_classes, len(hooks), "resnet18_cifar" in timm.list_models("*cifar*"))
"""
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    # the hook removed itself once timm was imported
    assert proc.stdout.split() == ["CifarResNet", "3", "0", "True"]


def test_register_backbones_explicitly() -> None:
    import timm

    import samix_hub

    names = samix_hub.register_backbones()
    assert "resnet18_cifar_w16" in names and all(timm.is_model(n) for n in names)
    assert samix_hub.register_backbones() == names  # twice: no error, same names


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_quiet_silences_library_bars_and_logs_then_restores() -> None:
    """Inside: huggingface_hub's and datasets' bars off, their loggers and timm's at errors
    (timm's cosine-schedule note is not even logged); outside: everything as before."""
    import datasets.utils
    import torch
    from huggingface_hub.utils import are_progress_bars_disabled
    from huggingface_hub.utils import logging as hf_logging
    from timm.scheduler import CosineLRScheduler

    from samix_hub.cli.options import quiet_third_party

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    records = _Records()
    logging.getLogger("timm").addHandler(records)

    def state() -> tuple[object, ...]:
        return (
            are_progress_bars_disabled(),
            datasets.utils.are_progress_bars_disabled(),
            hf_logging.get_verbosity(),
            logging.getLogger("timm").level,
            os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"),
        )

    try:
        before = state()
        with quiet_third_party():
            assert are_progress_bars_disabled() and datasets.utils.are_progress_bars_disabled()
            assert hf_logging.get_verbosity() == logging.ERROR
            CosineLRScheduler(optimizer, t_initial=1)
            assert records.messages == []
        assert state() == before
        CosineLRScheduler(optimizer, t_initial=1)  # outside: the note is logged
        assert len(records.messages) == 1 and "no effect" in records.messages[0]
    finally:
        logging.getLogger("timm").removeHandler(records)


def test_quiet_ignores_warnings_while_open() -> None:
    from samix_hub.cli.options import quiet_third_party

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_third_party():
            warnings.warn("inside", UserWarning, stacklevel=1)
        warnings.warn("outside", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["outside"]


@pytest.mark.slow
def test_quiet_run_prints_nothing_but_its_result(tmp_path: Path) -> None:
    """A fine-tune whose one step is all warm-up makes timm's cosine schedule print its note on
    stderr; with -q stderr stays empty and stdout holds only the run folder."""
    args = [
        "finetune", "--backbone", "resnet18_cifar_w16", "--no-pretrained", "--method", "vanilla",
        "--data", "digits", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "16",
        "--max-steps", "1", "--eval-every", "0", "--workers", "0", "--device", "cpu",
    ]  # fmt: skip
    code = "import sys; from samix_hub.cli.main import main; main(sys.argv[1:])"
    loud = python(code, *args, "--out", str(tmp_path / "loud"))
    assert loud.returncode == 0, loud.stderr
    assert "Cosine annealing scheduler will have no effect" in loud.stderr
    quiet = python(code, *args, "--out", str(tmp_path / "quiet"), "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout.strip() == str(tmp_path / "quiet")


def test_hf_data_without_datasets_names_the_extra(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed: import fails
    args = ["train", "--method", "mixup", "--data", "hf:beans", "--backbone", "resnet18_cifar_w16"]
    code, _, stderr = run_cli([*args, "--out", str(tmp_path / "r"), "--workers", "0"], capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and "hf:beans" in stderr
    assert "pip install 'samix-hub[hf]'" in stderr


def test_log_option_rejects_an_unknown_sink(tmp_path: Path, capsys) -> None:
    args = ["train", "--method", "mixup", "--data", "digits", "--backbone", "resnet18_cifar_w16"]
    code, _, stderr = run_cli([*args, "--out", tmp_path / "r", "--log", "csv,wandb"], capsys)
    assert code == 2 and "'wandb' is not one of csv, tensorboard" in stderr
    assert not (tmp_path / "r").exists()


def test_log_tensorboard_without_tensorboard_names_the_extra(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    args = ["train", "--method", "mixup", "--data", "digits", "--backbone", "resnet18_cifar_w16"]
    code, _, stderr = run_cli([*args, "--out", tmp_path / "r", "--log", "tensorboard"], capsys)
    assert code == 2 and stderr.count("\n") == 1
    assert "--log tensorboard needs" in stderr and "pip install 'samix-hub[tensorboard]'" in stderr
    assert not (tmp_path / "r").exists()  # refused before the run folder is made


def test_log_sinks_agree_between_the_cli_and_the_engine() -> None:
    """The option spells the names out so that --help imports no engine; the same names."""
    from samix_hub.format.run import LOG_SINKS
    from samix_hub.format.run import LOG_SINKS as CLI_SINKS

    assert CLI_SINKS == LOG_SINKS


@pytest.mark.hub
def test_quiet_pull_shows_no_fetching_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's "Fetching N files" bar: shown by a plain pull, not by ``pull -q``."""
    from fakehub import FakeHub
    from huggingface_hub import HfApi, constants

    from samix_hub.format.repo_ref import BUILTIN_DIR

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    token = "hf_fakehubSecretToken0123456789"
    code = "import sys; from samix_hub.cli.main import main; main(sys.argv[1:])"
    with FakeHub(token=token) as hub:
        api = HfApi(endpoint=hub.url, token=token)
        api.create_repo("me/gen")
        api.upload_folder(folder_path=BUILTIN_DIR / "cifar10-small", repo_id="me/gen")
        runs = {}
        for flags in ((), ("-q",)):
            env = {
                "HF_ENDPOINT": hub.url,
                "HF_HOME": str(tmp_path / f"home{len(flags)}"),
                "HF_TOKEN": token,
                "HF_HUB_DISABLE_XET": "1",
            }
            runs[flags] = python_env(code, env, "pull", "me/gen", *flags)
    loud, quiet = runs[()], runs[("-q",)]
    assert loud.returncode == 0 and quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "Fetching" in loud.stderr
    assert "Fetching" not in quiet.stderr and "%|" not in quiet.stderr
