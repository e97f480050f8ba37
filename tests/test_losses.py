"""Losses against brute-force per-sample reference computations."""

from __future__ import annotations

import math

import pytest
import torch

from samix_hub.mixing.losses import (
    eta_balanced_mixup_loss,
    info_nce,
    mixup_cross_entropy,
    mixup_info_nce,
    ssl_eta_balanced_loss,
)


def _brute_eta(logits, a, b, lam, eta):
    total = 0.0
    n, c = logits.shape
    for i in range(n):
        z = [float(v) for v in logits[i]]
        lse = math.log(sum(math.exp(v) for v in z))
        lam_i = float(lam[i]) if torch.is_tensor(lam) and lam.dim() else float(lam)
        ai, bi = int(a[i]), int(b[i])
        local = -(lam_i * (z[ai] - lse) + (1 - lam_i) * (z[bi] - lse))
        glob = 0.0
        if ai != bi:
            no_b = [z[j] for j in range(c) if j != bi]
            no_a = [z[j] for j in range(c) if j != ai]
            glob = -(z[ai] - math.log(sum(math.exp(v) for v in no_b)))
            glob += -(z[bi] - math.log(sum(math.exp(v) for v in no_a)))
        total += local + eta * glob
    return total / n


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, "per-sample"])
def test_eta_balanced_matches_brute_force(eta, lam):
    g = torch.Generator().manual_seed(0)
    n, c = 12, 7
    logits = torch.randn(n, c, generator=g) * 3
    a = torch.randint(c, (n,), generator=g)
    b = torch.randint(c, (n,), generator=g)
    b[:3] = a[:3]  # include a == b
    lam_v = torch.rand(n, generator=g) if lam == "per-sample" else lam
    got = eta_balanced_mixup_loss(logits, a, b, lam_v, eta=eta)
    want = _brute_eta(logits, a, b, lam_v, eta)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_eta_balanced_gradients_finite_with_equal_labels():
    logits = torch.randn(4, 5, requires_grad=True)
    a = torch.tensor([0, 1, 2, 3])
    loss = eta_balanced_mixup_loss(logits, a, a.clone(), 0.4, eta=1.0)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_eta_zero_equals_mixup_ce_and_global_positive():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 10, generator=g)
    a, b = torch.randint(10, (8,), generator=g), torch.randint(10, (8,), generator=g)
    lam = torch.rand(8, generator=g)
    base = eta_balanced_mixup_loss(logits, a, b, lam, eta=0.0)
    assert base.item() == pytest.approx(mixup_cross_entropy(logits, a, b, lam).item(), rel=1e-6)
    assert eta_balanced_mixup_loss(logits, a, b, lam, eta=0.5) > base


def test_mixup_ce_reference_and_smoothing():
    logits = torch.randn(6, 4)
    a = torch.tensor([0, 1, 2, 3, 0, 1])
    b = torch.tensor([1, 1, 3, 0, 2, 2])
    lam = 0.7
    logp = torch.log_softmax(logits, 1)
    want = -(lam * logp[range(6), a] + (1 - lam) * logp[range(6), b]).mean()
    assert mixup_cross_entropy(logits, a, b, lam).item() == pytest.approx(want.item(), rel=1e-6)
    smooth = mixup_cross_entropy(logits, a, b, lam, label_smoothing=0.1)
    assert smooth.item() != pytest.approx(want.item())


def test_lam_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="lam has 3 values"):
        mixup_cross_entropy(
            torch.randn(4, 3),
            torch.zeros(4, dtype=torch.long),
            torch.zeros(4, dtype=torch.long),
            torch.rand(3),
        )
    with pytest.raises(ValueError, match="eta"):
        eta_balanced_mixup_loss(
            torch.randn(2, 3),
            torch.zeros(2, dtype=torch.long),
            torch.ones(2, dtype=torch.long),
            0.5,
            eta=-1,
        )


def _nce_ref(q, k, queue, t):
    q = torch.nn.functional.normalize(q, dim=1)
    k = torch.nn.functional.normalize(k, dim=1)
    queue = torch.nn.functional.normalize(queue, dim=1)
    out = []
    for i in range(q.shape[0]):
        logits = torch.cat([(q[i] * k[i]).sum().view(1), queue @ q[i]]) / t
        out.append(-torch.log_softmax(logits, 0)[0])
    return torch.stack(out)


def test_info_nce_and_mixup_info_nce_reference():
    g = torch.Generator().manual_seed(3)
    q, ka, kb, queue = (torch.randn(s, 16, generator=g) for s in (5, 5, 5, 32))
    lam = torch.rand(5, generator=g)
    assert info_nce(q, ka, queue, 0.2).item() == pytest.approx(
        _nce_ref(q, ka, queue, 0.2).mean().item(), rel=1e-5
    )
    want = (lam * _nce_ref(q, ka, queue, 0.2) + (1 - lam) * _nce_ref(q, kb, queue, 0.2)).mean()
    assert mixup_info_nce(q, ka, kb, queue, lam, 0.2).item() == pytest.approx(want.item(), rel=1e-5)
    # SSL eta-balanced: local 2-way contrast + eta * (InfoNCE of both positives).
    qn = torch.nn.functional.normalize(q, dim=1)
    pa = (qn * torch.nn.functional.normalize(ka, dim=1)).sum(1)
    pb = (qn * torch.nn.functional.normalize(kb, dim=1)).sum(1)
    two = torch.log_softmax(torch.stack([pa, pb], 1) / 0.2, 1)
    local = -(lam * two[:, 0] + (1 - lam) * two[:, 1])
    glob = _nce_ref(q, ka, queue, 0.2) + _nce_ref(q, kb, queue, 0.2)
    got = ssl_eta_balanced_loss(q, ka, kb, queue, lam, eta=0.5, temperature=0.2)
    assert got.item() == pytest.approx((local + 0.5 * glob).mean().item(), rel=1e-5)


@pytest.mark.parametrize("variant", ["samix", "automix"])
def test_mixer_losses_compose_the_mixer_loss_and_its_weighted_regulariser(variant):
    """The one composition every scenario uses: η-balanced (AutoMix: mixup CE) on the scorer's
    logits with labels (a, b, λ), and weight x the mixer's own mask regulariser."""
    from samix_hub.mixing.losses import mixer_losses
    from samix_hub.models import Mixer, MixerConfig

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 5, generator=g)
    a = torch.tensor([0, 1, 2, 3, 4, 0])
    b = torch.tensor([1, 1, 0, 4, 2, 3])  # one pair with a == b
    mask = torch.rand(6, 1, 4, 4, generator=g)
    cfg = MixerConfig(16) if variant == "samix" else MixerConfig.automix(16)
    mixer = Mixer(cfg)
    loss, mask_loss = mixer_losses(logits, mask, a, b, 0.3, cfg, eta=0.5, weight=0.1)
    if variant == "samix":
        want = eta_balanced_mixup_loss(logits, a, b, 0.3, 0.5)
        assert loss.item() == pytest.approx(_brute_eta(logits, a, b, 0.3, 0.5), rel=1e-5)
    else:
        want = mixup_cross_entropy(logits, a, b, 0.3)
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(mask_loss, 0.1 * mixer.mask_loss(mask, 0.3))
    _, none = mixer_losses(logits, mask, a, b, 0.3, cfg, eta=0.5, weight=0.0)
    assert none.item() == 0.0


def test_ssl_mixer_losses_compose_the_label_free_loss_and_its_regulariser():
    from samix_hub.mixing.losses import ssl_mixer_losses
    from samix_hub.models import Mixer, MixerConfig

    g = torch.Generator().manual_seed(4)
    q, ka, kb = (torch.randn(4, 8, generator=g) for _ in range(3))
    queue = torch.randn(10, 8, generator=g)
    mask = torch.rand(4, 1, 4, 4, generator=g)
    cfg = MixerConfig(16)
    loss, mask_loss = ssl_mixer_losses(
        q, ka, kb, queue, mask, 0.7, cfg, eta=0.5, weight=0.1, temperature=0.2
    )
    torch.testing.assert_close(loss, ssl_eta_balanced_loss(q, ka, kb, queue, 0.7, 0.5, 0.2))
    torch.testing.assert_close(mask_loss, 0.1 * Mixer(cfg).mask_loss(mask, 0.7))
