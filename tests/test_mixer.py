"""The SAMix / AutoMix mixer: λ encoding, mask invariants, gradients, reference weights."""

from __future__ import annotations

import pytest
import torch

from samix_hub.mixing import mask_adjust
from samix_hub.models import Mixer, MixerConfig, create_encoder, rescale_lam


def test_rescale_lam_fixed_points_and_monotone():
    lam = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(rescale_lam(lam, 0.25), lam, atol=1e-6)
    grid = torch.linspace(0, 1, 201)
    for k in (0.0, 0.25, 1.0, 3.0):
        out = rescale_lam(grid, k)
        assert (out[1:] - out[:-1] > 0).all(), k
        assert out.min() >= 0 and out.max() <= 1 + 1e-6
    assert torch.equal(rescale_lam(grid, -1), grid)
    # k = 0.25 pulls λ towards 1/2, symmetrically: λ'(1 - λ) = 1 - λ'(λ).
    low = rescale_lam(torch.tensor(0.2), 0.25)
    assert 0.2 < low < 0.5
    assert rescale_lam(torch.tensor(0.8), 0.25).item() == pytest.approx(1 - low.item(), abs=1e-6)


def _features(n=6, c=16, h=4, w=4, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", ["samix", "automix"])
def test_mask_shape_range_and_per_sample_lam(variant):
    torch.manual_seed(0)
    cfg = MixerConfig(in_channels=16) if variant == "samix" else MixerConfig.automix(16)
    mixer = Mixer(cfg).eval()
    f = _features()
    partner = torch.tensor([1, 2, 3, 4, 5, 0])
    lam = torch.tensor([0.1, 0.3, 0.5, 0.6, 0.8, 0.95])
    mask = mixer(f, lam, partner, (16, 16))
    assert mask.shape == (6, 1, 16, 16)
    assert mask.min() >= 0 and mask.max() <= 1
    for i in range(6):
        single = mixer(f, float(lam[i]), partner, (16, 16))[i]
        assert torch.allclose(mask[i], single, atol=1e-6)


def test_mask_mean_moves_with_lam_after_training_signal():
    # Freshly initialised weights give masks near 0.5; the λ encoding must make the mask
    # respond to λ once the value net is non-trivial. Scale the value weights up and check
    # that the mean mask increases with λ.
    torch.manual_seed(0)
    mixer = Mixer(MixerConfig(in_channels=16)).eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.mul_(30)
    f = _features(n=8).abs() + 0.5
    partner = torch.roll(torch.arange(8), 1)
    means = [mixer(f, lam, partner, (8, 8)).mean().item() for lam in (0.1, 0.5, 0.9)]
    assert means[0] != pytest.approx(means[2], abs=1e-3)


def test_mask_loss_reference_formula():
    mixer = Mixer(MixerConfig(in_channels=4))
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 1, 5, 5, generator=g)
    lam = 0.3
    m = 1 - mask
    want = torch.relu((1 - m.mean() - lam).abs() - 0.1) - 2 * ((m - m.mean()) ** 2).mean()
    assert mixer.mask_loss(mask, lam).item() == pytest.approx(want.item(), rel=1e-6)
    auto = Mixer(MixerConfig.automix(4))
    assert auto.mask_loss(mask, lam).item() == pytest.approx(
        torch.relu((1 - m.mean() - lam).abs() - 0.1).item()
    )
    # A sharp (binary) mask is rewarded over a flat one of the same mean.
    sharp = torch.zeros(2, 1, 4, 4)
    sharp[:, :, :2] = 1
    flat = torch.full((2, 1, 4, 4), 0.5)
    assert mixer.mask_loss(sharp, 0.5) < mixer.mask_loss(flat, 0.5)


def test_mask_adjust_exact_mean_and_range():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(5, 1, 8, 8, generator=g) ** 2
    lam = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.99])
    out = mask_adjust(mask, lam)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), lam, atol=1e-5)
    assert out.min() >= 0 and out.max() <= 1


def test_gradients_reach_mixer_not_frozen_encoder():
    enc = create_encoder("resnet18_cifar_w16")
    for p in enc.parameters():
        p.requires_grad_(False)
    mixer = Mixer(MixerConfig(in_channels=enc.out_channels))
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        f = enc(x)
    mask = mixer(f, 0.4, torch.tensor([1, 2, 3, 0]), (32, 32))
    (mask * x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mixer.parameters())
    assert all(p.grad is None for p in enc.parameters())


def _openmixup_state(c, variant):
    g = torch.Generator().manual_seed(7)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    inter = c // 2
    if variant == "samix":
        return {
            "mix_block.query.conv.weight": r(inter, 2 * c, 1, 1),
            "mix_block.query.conv.bias": r(inter),
            "mix_block.key.conv.weight": r(inter, 2 * c, 1, 1),
            "mix_block.key.conv.bias": r(inter),
            "mix_block.value.conv.0.conv.weight": r(inter, c, 1, 1),
            "mix_block.value.conv.0.bn.weight": r(inter),
            "mix_block.value.conv.0.bn.bias": r(inter),
            "mix_block.value.conv.0.bn.running_mean": r(inter),
            "mix_block.value.conv.0.bn.running_var": r(inter).abs() + 0.5,
            "mix_block.value.conv.0.bn.num_batches_tracked": torch.tensor(10),
            "mix_block.value.conv.1.conv.weight": r(1, inter, 1, 1),
        }
    return {
        "query.conv.weight": r(inter, c, 1, 1),
        "query.conv.bias": r(inter),
        "value.weight": r(1, c, 1, 1),
        "value.bias": r(1),
    }


def _manual_samix(state, f, lam, partner, size, k=0.25):
    """Independent re-computation of docs/algorithm.md "The mixer" from raw tensors."""
    import torch.nn.functional as F

    p = {k_.replace("mix_block.", ""): v for k_, v in state.items()}
    lr = rescale_lam(torch.tensor(lam), k)
    fa, fb = f * (1 + lr), f[partner] * (2 - lr)
    h = F.conv2d(fb, p["value.conv.0.conv.weight"])
    h = F.batch_norm(
        h,
        p["value.conv.0.bn.running_mean"],
        p["value.conv.0.bn.running_var"],
        p["value.conv.0.bn.weight"],
        p["value.conv.0.bn.bias"],
        False,
        0.0,
        1e-5,
    )
    v = F.conv2d(F.elu(h), p["value.conv.1.conv.weight"])
    cat = torch.cat([fa, fb], 1)
    q = F.conv2d(cat, p["query.conv.weight"], p["query.conv.bias"])
    kk = F.conv2d(cat, p["key.conv.weight"], p["key.conv.bias"])
    n, c2, h_, w_ = q.shape
    attn = torch.softmax(torch.einsum("ncp,ncq->npq", q.flatten(2), kk.flatten(2)) / c2**0.5, -1)
    logits = torch.einsum("npq,nq->np", attn, v.flatten(1)).view(n, 1, h_, w_)
    m = torch.sigmoid(F.interpolate(logits, size=size, mode="bilinear", align_corners=False))
    return 1 - m


def test_load_openmixup_state_dict_samix_matches_manual():
    c = 8
    state = _openmixup_state(c, "samix")
    mixer = Mixer(MixerConfig(in_channels=c)).eval()
    mixer.load_openmixup_state_dict(state)
    f = _features(n=4, c=c, h=4, w=4)
    partner = torch.tensor([2, 3, 0, 1])
    got = mixer(f, 0.35, partner, (16, 16))
    want = _manual_samix(state, f, 0.35, partner, (16, 16))
    assert torch.allclose(got, want, atol=1e-5)


def test_load_openmixup_state_dict_automix_and_errors():
    c = 8
    mixer = Mixer(MixerConfig.automix(c))
    mixer.load_openmixup_state_dict(_openmixup_state(c, "automix"))
    assert torch.equal(mixer.value.bias, _openmixup_state(c, "automix")["value.bias"])
    with pytest.raises(ValueError, match="missing"):
        Mixer(MixerConfig(in_channels=c)).load_openmixup_state_dict(_openmixup_state(c, "automix"))
    bad = _openmixup_state(c, "samix")
    with pytest.raises(ValueError, match="shape"):
        Mixer(MixerConfig(in_channels=2 * c)).load_openmixup_state_dict(bad)


def test_config_round_trip_and_validation():
    cfg = MixerConfig(in_channels=32, dropout=0.1)
    assert MixerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="variant"):
        MixerConfig(in_channels=4, variant="puzzle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown mixer config"):
        MixerConfig.from_dict({"in_channels": 4, "bogus": 1})
