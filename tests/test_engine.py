"""Engine units: EMA schedule and update, stage features, every method's step, gradient routing
of online SAMix/AutoMix, bad inputs and NaN handling (in-process, tiny models on ``digits``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from samix_hub import Generator
from samix_hub.errors import UserError
from samix_hub.export.generator import write_generator
from samix_hub.models import GeneratorConfig, MixerConfig, create_encoder
from samix_hub.train import (
    NonFiniteLossError,
    StepContext,
    TrainConfig,
    build_classifier,
    ema_momentum,
    get_scenario,
    load_checkpoint,
    make_ema,
    train,
    update_ema,
)
from samix_hub.train.loader import eval_transform

BACKBONE = "resnet18_cifar_w16"  # stage 3: 64 channels


@pytest.fixture(scope="module")
def batch(digits) -> tuple[torch.Tensor, torch.Tensor]:
    tf = eval_transform(digits.image_size)
    items = [digits.train[i] for i in range(32)]
    return torch.stack([tf(x) for x, _ in items]), torch.tensor([y for _, y in items])


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory) -> Path:
    """A (random) frozen generator folder matching the tiny backbone, for samix-p."""
    folder = tmp_path_factory.mktemp("gen")
    with torch.random.fork_rng():
        torch.manual_seed(3)
        cfg = GeneratorConfig(BACKBONE, MixerConfig(64), input_size=(16, 16))
        write_generator(Generator(cfg), folder)
    return folder


def _cfg(method: str, tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        method=method,
        data="digits",
        backbone=BACKBONE,
        out=str(tmp_path / method),
        epochs=1,
        batch_size=32,
        workers=0,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base).resolve()


def _context(scenario, mods, cfg, step=0, backward=None) -> StepContext:
    gen = torch.Generator().manual_seed(100 + step)
    return StepContext(
        mods,
        cfg,
        torch.device("cpu"),
        gen,
        step,
        100,
        backward or (lambda loss: loss.backward()),
    )


# --------------------------------------------------------------------------- EMA
def test_ema_momentum_schedule_matches_reference_hook():
    base, end, total = 0.999, 0.999999, 1000
    # openmixup CosineScheduleHook(adjust_scope=[0.1, 1], warming_up="constant"), written out:
    for t in (0, 50, 99):
        assert ema_momentum(t, total, base, end) == base
    for t in (100, 400, 750, 1000):
        expected = end - (end - base) * (math.cos(math.pi * t / total) + 1) / 2
        assert ema_momentum(t, total, base, end) == pytest.approx(expected, abs=1e-12)
    values = [ema_momentum(t, total, base, end) for t in range(total + 1)]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == pytest.approx(end)


def test_update_ema_parameters_and_buffers():
    model = build_classifier(BACKBONE, 10, (0.5,) * 3, (0.25,) * 3, seed=0)
    ema = make_ema(model)
    assert not any(p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        for b in model.buffers():
            if b.dtype.is_floating_point:
                b.add_(2.0)
    old_p = [p.clone() for p in ema.parameters()]
    old_b = [b.clone() for b in ema.buffers()]
    update_ema(ema, model, 0.9, own_buffers=True)
    for o, e, m in zip(old_p, ema.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(e, 0.9 * o + 0.1 * m)
    for o, e in zip(old_b, ema.buffers(), strict=True):  # own buffers: untouched
        assert torch.equal(o, e)
    update_ema(ema, model, 0.5, own_buffers=False)
    for o, e, m in zip(old_b, ema.buffers(), model.buffers(), strict=True):
        if o.dtype.is_floating_point:
            torch.testing.assert_close(e, 0.5 * o + 0.5 * m)


def test_classifier_features_equal_stage_encoder():
    model = build_classifier(BACKBONE, 10, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25), seed=1).eval()
    enc = create_encoder(BACKBONE, stage=3).eval()
    enc.load_from_backbone(model.net)
    x = torch.rand(3, 3, 16, 16)
    mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.3, 0.25]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x, 3), enc((x - mean) / std))
        torch.testing.assert_close(model(x), model.net((x - mean) / std))


def test_build_classifier_seed_is_reproducible_and_leaves_global_rng():
    state = torch.get_rng_state()
    a = build_classifier(BACKBONE, 10, (0.5,) * 3, (0.5,) * 3, seed=7)
    assert torch.equal(state, torch.get_rng_state())
    b = build_classifier(BACKBONE, 10, (0.5,) * 3, (0.5,) * 3, seed=7)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


# --------------------------------------------------------------------------- step functions
@pytest.mark.parametrize("method", ["vanilla", "mixup", "cutmix", "automix", "samix", "samix-p"])
def test_each_method_trains(method, tmp_path, digits, batch, generator_dir):
    """A few SGD steps of each method on one fixed batch lower its clean cross-entropy."""
    extra = {"generator": str(generator_dir)} if method == "samix-p" else {}
    cfg = _cfg(method, tmp_path, lr=0.05, **extra)
    scenario = get_scenario("sl")
    mods = scenario.build(cfg, digits, torch.device("cpu"))
    params = [p for m in mods.trainable() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)
    images, labels = batch
    step_fn = scenario.step_fn(method)

    def clean_ce() -> float:
        mods.model.eval()
        with torch.no_grad():
            ce = F.cross_entropy(mods.model(images), labels).item()
        mods.model.train()
        return ce

    mixer_before = [p.clone() for p in mods.mixer.parameters()] if mods.mixer else []
    ce_before = clean_ce()
    for step in range(16):
        opt.zero_grad(set_to_none=True)
        losses = step_fn(_context(scenario, mods, cfg, step), images, labels)
        assert set(losses) >= {"loss"} and all(torch.isfinite(v) for v in losses.values())
        opt.step()
        scenario.after_step(mods, step, 100, cfg)
    # BatchNorm statistics need some steps at momentum 0.1: refresh them on the batch.
    with torch.no_grad():
        for _ in range(20):
            mods.model(images)
    ce_after = clean_ce()
    assert ce_after < 0.8 * ce_before, (method, ce_before, ce_after)
    if method in ("automix", "samix"):
        assert set(losses) == {"loss", "loss_mix", "loss_clean", "loss_mixer", "loss_mask"}
        total = sum(v for k, v in losses.items() if k != "loss")
        torch.testing.assert_close(losses["loss"], total)
        moved = [
            not torch.equal(a, b)
            for a, b in zip(mixer_before, mods.mixer.parameters(), strict=True)
        ]
        assert all(moved), "every mixer parameter is trained"


@pytest.mark.parametrize("method", ["samix", "automix"])
def test_online_gradient_routing(method, tmp_path, digits, batch):
    """Mixer: gradients only from the mixer loss; classifier: none from it; EMA: none at all."""
    cfg = _cfg(method, tmp_path)
    scenario = get_scenario("sl")
    mods = scenario.build(cfg, digits, torch.device("cpu"))
    # The step runs its backward passes one after another: the first is the mixer loss's,
    # the next two the classifier's (mixup CE, clean CE). Each hook records which pass it saw.
    current: dict[str, int | None] = {"pass": None}
    seen: dict[str, set] = {"mixer": set(), "model": set()}
    for group, module in (("mixer", mods.mixer), ("model", mods.model)):
        for p in module.parameters():
            p.register_hook(lambda g, group=group: seen[group].add(current["pass"]))
    passes: list[int] = []

    def backward(loss: torch.Tensor) -> None:
        current["pass"] = len(passes)
        passes.append(len(passes))
        loss.backward()
        current["pass"] = None

    images, labels = batch
    scenario.step_fn(method)(_context(scenario, mods, cfg, 0, backward), images, labels)
    assert passes == [0, 1, 2]  # mixer, classifier (mixed), classifier (clean)
    assert seen["mixer"] == {0}
    assert seen["model"] == {1, 2}
    assert all(p.grad is None for p in mods.ema.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mods.mixer.parameters())
    assert all(p.grad is not None for p in mods.model.parameters())


def test_online_samix_mixer_gradient_equals_mixer_loss_gradient(tmp_path, digits, batch):
    """The mixer's gradient after a full step is exactly that of the mixer loss alone,
    recomputed independently from the same λ_m and π_m (docs/algorithm.md "Online supervised SAMix", step 4)."""
    from samix_hub.mixing.losses import eta_balanced_mixup_loss
    from samix_hub.mixing.sampling import sample_lam, sample_partner

    cfg = _cfg("samix", tmp_path)
    scenario = get_scenario("sl")
    mods = scenario.build(cfg, digits, torch.device("cpu"))
    images, labels = batch
    ema_state = {k: v.clone() for k, v in mods.ema.state_dict().items()}
    mixer_state = {k: v.clone() for k, v in mods.mixer.state_dict().items()}
    scenario.step_fn("samix")(_context(scenario, mods, cfg, 5), images, labels)
    got = [p.grad.clone() for p in mods.mixer.parameters()]

    # Reference: same draws, same starting states, mixer loss only.
    mods.ema.load_state_dict(ema_state)
    mods.mixer.load_state_dict(mixer_state)
    mods.mixer.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(105)
    lam_m = float(sample_lam(2.0, rng=g))
    float(sample_lam(2.0, rng=g))
    pi_m = sample_partner(32, g)
    with torch.no_grad():  # train-mode BatchNorm: running statistics do not enter the output
        feats = mods.ema.features(images, 3)
    mask = mods.mixer(feats, lam_m, pi_m, (16, 16))
    mixed = mask * images + (1 - mask) * images[pi_m]
    loss = eta_balanced_mixup_loss(mods.ema(mixed), labels, labels[pi_m], lam_m, 0.5)
    loss = loss + 0.1 * mods.mixer.mask_loss(mask, lam_m)
    want = torch.autograd.grad(loss, list(mods.mixer.parameters()))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "resnet_does_not_exist"}, "resnet_does_not_exist"),
        ({"data": "npz:/nonexistent/data.npz"}, "/nonexistent/data.npz"),
        ({"data": "folder:/nonexistent/images"}, "/nonexistent/images"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"eta": -0.5}, "eta"),
        ({"mask_adjust": 1.5}, "mask-adjust"),
        ({"method": "samix-p"}, "--generator"),
        ({"method": "nomix"}, "nomix"),
    ],
)
def test_bad_inputs_are_one_clear_error(overrides, message, tmp_path):
    kwargs = dict(
        method="samix", data="digits", backbone=BACKBONE, out=str(tmp_path / "r"), workers=0
    )
    kwargs.update(overrides)
    with pytest.raises(UserError, match=message.replace("-", r"\-").replace(".", r"\.")):
        train(TrainConfig(**kwargs), quiet=True)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    """lr 1e30 makes the weights overflow within a few steps: the run stops naming the step and
    the loss component, and the checkpoint of the last good step stays loadable and finite."""
    cfg = _cfg("samix", tmp_path, lr=1e30, max_steps=30, checkpoint_every=1, batch_size=16)
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg, quiet=True)
    msg = str(info.value)
    step = int(msg.split("at step ")[1].split()[0])
    assert "non-finite loss" in msg and "loss_" in msg and "last good checkpoint" in msg
    state = load_checkpoint(tmp_path / "samix")
    assert state["step"] == step - 1
    assert all(torch.isfinite(v).all() for v in state["mixer"].values() if v.is_floating_point())
    rows = (tmp_path / "samix" / "steps.jsonl").read_text().splitlines()
    assert len(rows) == step - 1


def test_existing_run_needs_resume(tmp_path):
    cfg = _cfg("vanilla", tmp_path, max_steps=2, batch_size=16, eval_every=0)
    train(cfg, quiet=True)
    with pytest.raises(UserError, match="--resume"):
        train(_cfg("vanilla", tmp_path, max_steps=2, batch_size=16), quiet=True)
    with pytest.raises(UserError, match="different lr"):
        train(_cfg("vanilla", tmp_path, max_steps=2, batch_size=16, lr=0.3), resume=True)


def test_torchrun_env_is_read_in_one_place(monkeypatch):
    """(rank, world, local rank) from torchrun's variables; one process without them."""
    from samix_hub.train.distributed import init_distributed, is_main_process, torchrun_env

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_env() == (0, 1, 0) and is_main_process()
    info = init_distributed(torch.device("cpu"))
    assert (info.rank, info.world, info.enabled, info.is_main) == (0, 1, False, True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert torchrun_env() == (3, 4, 3) and not is_main_process()  # one machine: local = rank
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_env() == (3, 4, 1)
