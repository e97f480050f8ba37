"""Data safety: no command loses data, one writer per output folder, faults are one line.

Every case checks the exit code, a one-line message naming the offending path, no traceback,
and that nothing beside the output folder changed (hashes of the parent folder's other files);
refusals also leave the output folder's content exactly as it was. Storage faults (disk full,
read-only) are simulated by making an OS function raise the error the OS would raise: the tests
run as root, for whom permission bits do not stop a write.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

from samix_hub import Generator, GeneratorConfig, MixerConfig
from samix_hub.errors import OutputError
from samix_hub.export.generator import write_generator
from samix_hub.fileio.locking import LOCK_NAME, folder_lock
from samix_hub.format.mixed import DATA_DIR, STATE_NAME

sys.path.insert(0, str(Path(__file__).parent))
from fakehub import FakeHub  # noqa: E402

TOKEN = "hf_fakehubSecretToken0123456789"
CARD = "---\nlibrary_name: samix-hub\nlicense: apache-2.0\ntags: [mixup, samix]\n---\n# test\n"
MIX = ["mix", "--method", "mixup", "--data", "digits", "--num", 20, "--shard-size", 10]
MIX += ["--workers", 0, "-q"]
TRAIN = ["train", "--method", "vanilla", "--data", "digits", "--backbone", "resnet18_cifar_w16"]
TRAIN += ["--epochs", 1, "--workers", 0, "--batch-size", 32, "--max-steps", 2, "-q"]


# ---------------------------------------------------------------------------------- helpers
def tree(folder: Path, *skip: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (except under ``skip``), by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not any(p.is_relative_to(s) for s in skip):
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_one_line(err: str, *names: object) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])


def user_folder(folder: Path) -> Path:
    """A folder of the user's: a README and notes that no command may touch."""
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("# my notes\n")
    (folder / "notes.txt").write_text("keep me\n")
    return folder


def make_generator(folder: Path) -> Path:
    torch.manual_seed(0)  # test set-up only
    cfg = GeneratorConfig("resnet18_cifar_w16", MixerConfig(in_channels=64), input_size=(16, 16))
    write_generator(Generator(cfg), folder)
    (folder / "README.md").write_text(CARD)
    return folder


def hold_lock(folder: Path) -> subprocess.Popen[str]:
    """The folder's lock, held by another process until it is killed."""
    script = (
        "import sys, time\n"
        "from samix_hub.fileio.locking import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


# ---------------------------------------------------------------------------------- mix
@pytest.mark.parametrize("no_resume", [False, True])
def test_mix_refuses_a_folder_it_did_not_write(tmp_path: Path, capsys, no_resume: bool) -> None:
    out = user_folder(tmp_path / "mine")
    (out / DATA_DIR).mkdir()
    (out / DATA_DIR / "train-00000-of-00001.parquet").write_bytes(b"the user's shard")
    before, outside = tree(out), tree(tmp_path, out)
    extra = ["--no-resume"] if no_resume else []
    code, stdout, err = run_cli([*MIX, "--out", out, *extra], capsys)
    assert code == 2 and stdout == ""
    assert_one_line(err, out, "not a `mix` output", STATE_NAME)
    assert tree(out) == before and tree(tmp_path, out) == outside


def test_mix_refuses_a_generator_folder(tmp_path: Path, capsys) -> None:
    gen = make_generator(tmp_path / "generator")
    before, outside = tree(gen), tree(tmp_path, gen)
    code, _, err = run_cli([*MIX, "--out", gen], capsys)
    assert code == 2
    assert_one_line(err, gen, "not a `mix` output")
    assert tree(gen) == before and tree(tmp_path, gen) == outside


def test_train_refuses_a_generator_folder(tmp_path: Path, capsys) -> None:
    gen = make_generator(tmp_path / "generator")
    before, outside = tree(gen), tree(tmp_path, gen)
    code, _, err = run_cli([*TRAIN, "--out", gen], capsys)
    assert code == 2
    assert_one_line(err, gen / "config.json", "not a samix-hub run")
    assert tree(gen) == before
    assert tree(tmp_path, gen) == outside


def test_mix_no_resume_clears_only_what_its_marker_lists(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mixed"
    assert run_cli([*MIX, "--out", out], capsys)[0] == 0
    first = tree(out)
    assert {"data/train-00000-of-00002.parquet", "README.md", STATE_NAME} <= set(first)
    (out / "notes.txt").write_text("mine\n")  # added by the user after the run
    (out / DATA_DIR / "train-00000-of-00009.parquet").write_bytes(b"not from this mix")
    (out / ".README.md.abc123.tmp").write_text("left by a killed run")
    outside = tree(tmp_path, out)
    code, _, err = run_cli([*MIX, "--seed", 1, "--out", out], capsys)  # other settings
    assert code == 2
    assert_one_line(err, out, "other settings (seed)", "--no-resume")
    code, _, err = run_cli(
        [*MIX, "--seed", 1, "--shard-size", 5, "--no-resume", "--out", out], capsys
    )
    assert code == 0, err
    after = tree(out)
    assert after["notes.txt"] == hashlib.sha256(b"mine\n").hexdigest()
    theirs = hashlib.sha256(b"not from this mix").hexdigest()
    assert after["data/train-00000-of-00009.parquet"] == theirs
    assert not any(k.endswith("-of-00002.parquet") for k in after)  # the old run's shards
    assert {f"data/train-0000{i}-of-00004.parquet" for i in range(4)} <= set(after)
    assert after["README.md"] != first["README.md"]
    assert not (out / ".README.md.abc123.tmp").exists()  # temp file of a killed run removed
    assert tree(tmp_path, out) == outside


def test_mix_checks_out_and_preview_before_working(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder\n")
    outside = tree(tmp_path)
    code, _, err = run_cli([*MIX, "--out", blocker / "out"], capsys)
    assert code == 1
    assert_one_line(err, blocker, "--out", "not a folder")
    code, _, err = run_cli(
        [*MIX, "--out", tmp_path / "ok", "--preview", blocker / "grid.png"], capsys
    )
    assert code == 1
    assert_one_line(err, blocker, "--preview")
    assert not (tmp_path / "ok").exists() and tree(tmp_path) == outside


@pytest.mark.parametrize(
    "args",
    [
        ["export", "runs/none", "--out"],
        ["demo", "--fast", "-q", "--out"],
        ["pull", "me/x", "--dir"],
    ],
)
def test_other_outputs_are_checked_first(tmp_path: Path, capsys, args: list[str]) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder\n")
    outside = tree(tmp_path)
    code, _, err = run_cli([*args, blocker / "out"], capsys)
    assert code == 1
    assert_one_line(err, blocker / "out", args[-1], "not a folder")
    assert tree(tmp_path) == outside


@pytest.mark.parametrize("err_no", [errno.EROFS, errno.EACCES])
def test_unwritable_output_is_one_line(tmp_path: Path, capsys, monkeypatch, err_no: int) -> None:
    real = os.open
    ro = tmp_path / "ro"
    ro.mkdir()

    def refuse(path, flags, *args, **kw):  # what open(2) answers on a read-only mount (EROFS)
        if str(path).startswith(str(ro)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(err_no, os.strerror(err_no), str(path))  # or without permission
        return real(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", refuse)
    outside = tree(tmp_path)
    for args in ([*MIX, "--out", ro / "m"], [*TRAIN, "--out", ro], ["pull", "me/x", "--dir", ro]):
        code, _, err = run_cli(args, capsys)
        assert code == 1
        assert_one_line(err, ro, os.strerror(err_no))
    assert tree(tmp_path) == outside and list(ro.iterdir()) == []


def test_disk_full_while_mixing_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    real = os.replace

    def disk_full(src, dst, *args, **kw):  # the disk fills up as the first shard lands
        if str(dst).endswith(".parquet"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kw)

    monkeypatch.setattr(os, "replace", disk_full)
    out = tmp_path / "mixed"
    code, _, err = run_cli([*MIX, "--out", out], capsys)
    assert code == 1
    assert_one_line(err, out / DATA_DIR / "train-00000-of-00002.parquet", "no space left")
    assert not list((out / DATA_DIR).glob("*.tmp"))  # no partial file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed"]


def test_disk_full_while_checkpointing_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    import builtins

    real_open = builtins.open

    class FullDisk(io.FileIO):
        def write(self, data) -> int:  # what write(2) answers once the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def opener(file, mode="r", *args, **kw):
        if Path(str(file)).name.startswith(".last.pt.") and "w" in mode:
            return FullDisk(file, mode)
        return real_open(file, mode, *args, **kw)

    monkeypatch.setattr(builtins, "open", opener)
    run = tmp_path / "run"
    code, _, err = run_cli([*TRAIN, "--out", run], capsys)
    assert code == 1
    assert_one_line(err, run / "checkpoints" / "last.pt", "no space left")
    assert not list((run / "checkpoints").glob("*.tmp"))  # the partial file was removed
    assert not (run / "checkpoints" / "last.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ---------------------------------------------------------------------------------- locks
def test_second_writer_is_locked_out(tmp_path: Path, capsys) -> None:
    mixed, run = tmp_path / "mixed", tmp_path / "run"
    holders = [hold_lock(mixed), hold_lock(run)]
    try:
        outside = tree(tmp_path)
        for args, folder in (([*MIX, "--out", mixed], mixed), ([*TRAIN, "--out", run], run)):
            code, _, err = run_cli(args, capsys)
            assert code == 1
            assert_one_line(err, folder, "in use by another samix-hub")
        ft = ["finetune", "--backbone", "resnet18_cifar_w16", "--no-pretrained", "--method"]
        ft += ["mixup", "--data", "digits", *TRAIN[7:]]
        code, _, err = run_cli([*ft, "--out", run], capsys)
        assert code == 1
        assert_one_line(err, run, "in use by another samix-hub")
        assert tree(tmp_path) == outside  # neither run wrote anything
        with pytest.raises(OutputError, match="in use"), folder_lock(run):
            pass  # Python callers get the same refusal
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()


def test_lock_of_a_killed_process_does_not_block(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mixed"
    script = (  # takes the lock as locking.folder_lock does, then dies holding it
        "import fcntl, os, sys\n"
        "os.makedirs(sys.argv[1])\n"
        "fd = os.open(os.path.join(sys.argv[1], '.samix.lock'), os.O_RDWR | os.O_CREAT)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "os.write(fd, b'%d' % os.getpid())\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(out)], timeout=60)
    assert proc.returncode == -9
    assert (out / LOCK_NAME).read_text().strip().isdigit()  # the lock file is still there
    code, stdout, err = run_cli([*MIX, "--out", out], capsys)
    assert code == 0, err
    assert stdout.strip() == str(out) and (out / "README.md").is_file()


# ---------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_says_how_to_resume(tmp_path: Path, capsys, monkeypatch) -> None:
    run, ft, mixed = tmp_path / "run", tmp_path / "ft", tmp_path / "mixed"
    (tmp_path / "other.txt").write_text("not part of any run\n")
    outside = tree(tmp_path, run, ft, mixed)
    (run / "checkpoints").mkdir(parents=True)
    stale = [run / "checkpoints" / ".last.pt.x1y2z3.tmp", run / ".config.json.a1b2c3.tmp"]
    for p in stale:
        p.write_bytes(b"partial")  # what a killed run leaves behind
    real_step = torch.optim.SGD.step

    def interrupted(self, *args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.optim.SGD, "step", interrupted)
    code, _, err = run_cli([*TRAIN, "--out", run], capsys)
    assert code == 130
    assert_one_line(err, f"samix-hub train --resume --out {run}")
    assert not any(p.exists() for p in stale)
    code, _, err = run_cli(
        ["finetune", "--backbone", "resnet18_cifar_w16", "--no-pretrained", "--method", "mixup",
         "--data", "digits", *TRAIN[7:], "--out", ft], capsys,
    )  # fmt: skip
    assert code == 130
    assert_one_line(err, f"samix-hub finetune --resume --out {ft}")
    monkeypatch.setattr(torch.optim.SGD, "step", real_step)
    code, _, err = run_cli(["train", "--resume", "--out", run, "-q"], capsys)  # as told
    assert code == 0, err
    assert (run / "checkpoints" / "last.pt").is_file()

    import pyarrow.parquet as pq

    real_write = pq.write_table
    monkeypatch.setattr(pq, "write_table", interrupted)
    code, _, err = run_cli([*MIX, "--out", mixed], capsys)
    assert code == 130
    assert_one_line(err, "without --no-resume", mixed)
    monkeypatch.setattr(pq, "write_table", real_write)
    assert run_cli([*MIX, "--out", mixed], capsys)[0] == 0  # as told
    assert (mixed / "README.md").is_file()
    assert tree(tmp_path, run, ft, mixed) == outside


# ---------------------------------------------------------------------------------- Hub
@pytest.fixture(scope="module")
def hub():
    with FakeHub(token=TOKEN) as server:
        yield server


@pytest.fixture
def hub_env(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """In-process CLI against the fake Hub, with a private cache; returns the Hub options."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    return ["--endpoint", hub.url, "--token", TOKEN]


def test_push_is_additive_unless_delete(hub: FakeHub, hub_env, tmp_path: Path, capsys) -> None:
    from huggingface_hub import HfApi

    gen = make_generator(tmp_path / "gen")
    assert run_cli(["push", gen, "me/safe-push", *hub_env, "-q"], capsys)[0] == 0
    HfApi(endpoint=hub.url, token=TOKEN).upload_file(
        path_or_fileobj=b"MIT\n", path_in_repo="LICENSE", repo_id="me/safe-push"
    )  # added on the Hub, not in the folder
    repo = hub.repos[("model", "me/safe-push")]
    (gen / "README.md").write_text(CARD + "updated\n")
    code, stdout, err = run_cli(["push", gen, "me/safe-push", *hub_env, "-q"], capsys)
    assert code == 0, err
    files = repo.commits[repo.branches["main"]]
    assert files["LICENSE"] == b"MIT\n" and files["README.md"].endswith(b"updated\n")

    main_before = repo.branches["main"]
    (gen / "README.md").write_text(CARD + "proposed\n")
    code, stdout, err = run_cli(["push", gen, "me/safe-push", "--create-pr", *hub_env], capsys)
    assert code == 0, err
    url, sha = stdout.split()
    assert url.endswith("/me/safe-push/discussions/1") and repo.prs == {1: sha}
    assert repo.branches["main"] == main_before  # main is untouched until the PR is merged
    assert repo.commits[sha]["README.md"].endswith(b"proposed\n")
    code, _, err = run_cli(
        ["push", gen, "me/safe-push", "--create-pr", "--tag", "v1", *hub_env], capsys
    )
    assert code == 2
    assert_one_line(err, "--tag v1")

    code, _, err = run_cli(["push", gen, "me/safe-push", "--delete", *hub_env, "-q"], capsys)
    assert code == 0, err
    files = repo.commits[repo.branches["main"]]
    assert "LICENSE" not in files and set(files) == {".gitattributes", *tree(gen)}


def test_pull_never_deletes_files_it_did_not_download(
    hub: FakeHub, hub_env, tmp_path: Path, capsys
) -> None:
    gen = make_generator(tmp_path / "gen")
    assert run_cli(["push", gen, "me/safe-pull", *hub_env, "-q"], capsys)[0] == 0
    dest = user_folder(tmp_path / "dest")
    before, outside = tree(dest), tree(tmp_path, dest, tmp_path / "cache")
    code, _, err = run_cli(["pull", "me/safe-pull", "--dir", dest, *hub_env, "-q"], capsys)
    assert code == 2
    assert_one_line(err, dest, "not a samix-hub artifact pulled from me/safe-pull", "--force")
    assert tree(dest) == before
    assert tree(tmp_path, dest, tmp_path / "cache") == outside

    code, stdout, err = run_cli(
        ["pull", "me/safe-pull", "--dir", dest, "--force", *hub_env], capsys
    )
    assert code == 0, err
    after = tree(dest)
    assert after["notes.txt"] == before["notes.txt"]  # kept
    assert after["README.md"] == tree(gen)["README.md"]  # same name: the artifact's
    assert after["generator.safetensors"] == tree(gen)["generator.safetensors"]

    fresh = tmp_path / "fresh"
    assert run_cli(["pull", "me/safe-pull", "--dir", fresh, *hub_env, "-q"], capsys)[0] == 0
    (gen / "README.md").write_text(CARD + "v2\n")
    assert run_cli(["push", gen, "me/safe-pull", *hub_env, "-q"], capsys)[0] == 0
    code, _, err = run_cli(["pull", "me/safe-pull", "--dir", fresh, *hub_env, "-q"], capsys)
    assert code == 0, err  # an earlier pull of the same repo is updated in place
    assert tree(fresh) == tree(gen)

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, _, err = run_cli(["pull", "me/safe-pull", "--dir", blocker / "d", *hub_env], capsys)
    assert code == 1
    assert_one_line(err, blocker, "--dir")


def test_lock_removes_only_a_folder_it_created_empty(tmp_path: Path) -> None:
    with folder_lock(tmp_path / "unused"):
        assert (tmp_path / "unused" / LOCK_NAME).is_file()
    assert not (tmp_path / "unused").exists()  # a run that wrote nothing leaves no folder
    with folder_lock(tmp_path / "used"):
        (tmp_path / "used" / "config.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == [LOCK_NAME, "config.json"]
    (tmp_path / "mine").mkdir()
    with folder_lock(tmp_path / "mine"):
        pass
    assert (tmp_path / "mine").is_dir()  # the user's folder stays, even empty
