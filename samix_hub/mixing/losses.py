"""Losses: mixup cross-entropy, the η-balanced mixup loss (docs/algorithm.md "The η-balanced mixup
loss"), InfoNCE, the mixer's mask regulariser (docs/algorithm.md "The mixer") and the mixer's
whole loss as every scenario composes it (:func:`mixer_losses`, :func:`ssl_mixer_losses`).

All return batch means. ``lam`` is a float or a tensor of N values (the share of ``label_a``).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from samix_hub.mixing.masks import as_lam_tensor

__all__ = [
    "mixup_cross_entropy",
    "eta_balanced_mixup_loss",
    "info_nce",
    "mixup_info_nce",
    "ssl_eta_balanced_loss",
    "check_eta",
    "mask_regulariser",
    "MaskSettings",
    "weighted_mask_loss",
    "mixer_losses",
    "ssl_mixer_losses",
]


def _lam(lam: float | torch.Tensor, n: int, ref: torch.Tensor) -> torch.Tensor:
    return as_lam_tensor(lam, n, ref.device).to(ref.dtype)


def check_eta(eta: float) -> float:
    if not (0.0 <= float(eta) < float("inf")):
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    return float(eta)


def mixup_cross_entropy(
    logits: torch.Tensor,
    label_a: torch.Tensor,
    label_b: torch.Tensor,
    lam: float | torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``mean(λ CE(z, a) + (1 - λ) CE(z, b))``."""
    logits = logits.float()
    lam_t = _lam(lam, logits.shape[0], logits)
    ce_a = F.cross_entropy(logits, label_a, reduction="none", label_smoothing=label_smoothing)
    ce_b = F.cross_entropy(logits, label_b, reduction="none", label_smoothing=label_smoothing)
    return (lam_t * ce_a + (1 - lam_t) * ce_b).mean()


def _log_softmax_without(
    logits: torch.Tensor, drop: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """log softmax over the classes except ``drop`` (per row), read at ``keep``.

    Rows where ``drop == keep`` are computed over all classes (the caller zeroes them).
    """
    rows = torch.arange(logits.shape[0], device=logits.device)
    excluded = torch.zeros_like(logits, dtype=torch.bool)
    excluded[rows, drop] = drop != keep
    masked = logits.masked_fill(excluded, float("-inf"))
    return torch.log_softmax(masked, dim=1)[rows, keep]


def eta_balanced_mixup_loss(
    logits: torch.Tensor,
    label_a: torch.Tensor,
    label_b: torch.Tensor,
    lam: float | torch.Tensor,
    eta: float = 0.5,
) -> torch.Tensor:
    """SAMix η-balanced mixup loss ``local + η global`` (docs/algorithm.md "The η-balanced mixup loss").

    local  = ``-λ log softmax(z)[a] - (1 - λ) log softmax(z)[b]``;
    global = ``-log softmax(z \\ b)[a] - log softmax(z \\ a)[b]``, 0 where ``a == b``.
    ``eta=0`` reproduces the released openmixup configs (local term only).
    """
    eta = check_eta(eta)
    logits = logits.float()
    n = logits.shape[0]
    lam_t = _lam(lam, n, logits)
    logp = torch.log_softmax(logits, dim=1)
    rows = torch.arange(n, device=logits.device)
    local = -(lam_t * logp[rows, label_a] + (1 - lam_t) * logp[rows, label_b])
    if eta == 0.0:
        return local.mean()
    glob = -(
        _log_softmax_without(logits, label_b, label_a)
        + _log_softmax_without(logits, label_a, label_b)
    )
    glob = torch.where(label_a == label_b, torch.zeros_like(glob), glob)
    return (local + eta * glob).mean()


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=1)


def info_nce(
    query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """MoCo InfoNCE: positive ``q . k``, negatives ``q . queue`` (K x D), all L2-normalised."""
    q, k, neg = _normalize(query), _normalize(key), _normalize(queue)
    pos = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([pos, q @ neg.t()], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


def mixup_info_nce(
    query: torch.Tensor,
    key_a: torch.Tensor,
    key_b: torch.Tensor,
    queue: torch.Tensor,
    lam: float | torch.Tensor,
    temperature: float = 0.2,
) -> torch.Tensor:
    """Mixup InfoNCE (docs/algorithm.md "Self-supervised SAMix"): the mixed query is pulled to ``key_a`` with weight λ
    and to ``key_b`` with weight ``1 - λ``, each against the queue's negatives."""
    q = _normalize(query)
    lam_t = _lam(lam, q.shape[0], q)
    neg = q @ _normalize(queue).t()
    pos_a = (q * _normalize(key_a)).sum(1, keepdim=True)
    pos_b = (q * _normalize(key_b)).sum(1, keepdim=True)
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    ce_a = F.cross_entropy(torch.cat([pos_a, neg], 1) / temperature, target, reduction="none")
    ce_b = F.cross_entropy(torch.cat([pos_b, neg], 1) / temperature, target, reduction="none")
    return (lam_t * ce_a + (1 - lam_t) * ce_b).mean()


def ssl_eta_balanced_loss(
    query: torch.Tensor,
    key_a: torch.Tensor,
    key_b: torch.Tensor,
    queue: torch.Tensor,
    lam: float | torch.Tensor,
    eta: float = 0.5,
    temperature: float = 0.2,
) -> torch.Tensor:
    """Label-free η-balanced loss for the SSL mixer (docs/algorithm.md "Self-supervised SAMix").

    local: the 2-way contrast between the two positives, ``-λ log p(a) - (1 - λ) log p(b)`` with
    ``p = softmax([q.k_a, q.k_b] / T)``; global: InfoNCE of each positive against the queue.
    """
    eta = check_eta(eta)
    q = _normalize(query)
    lam_t = _lam(lam, q.shape[0], q)
    pos_a = (q * _normalize(key_a)).sum(1, keepdim=True)
    pos_b = (q * _normalize(key_b)).sum(1, keepdim=True)
    two = torch.log_softmax(torch.cat([pos_a, pos_b], 1) / temperature, dim=1)
    local = -(lam_t * two[:, 0] + (1 - lam_t) * two[:, 1])
    if eta == 0.0:
        return local.mean()
    neg = q @ _normalize(queue).t()
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    glob = F.cross_entropy(torch.cat([pos_a, neg], 1) / temperature, target, reduction="none")
    glob = glob + F.cross_entropy(
        torch.cat([pos_b, neg], 1) / temperature, target, reduction="none"
    )
    return (local + eta * glob).mean()


def mask_regulariser(
    mask: torch.Tensor,
    lam: float | torch.Tensor,
    *,
    margin: float,
    variant: str = "samix",
    variance: str = "batch",
) -> torch.Tensor:
    """The mixer's mask regulariser (unweighted; the engine multiplies by 0.1).

    SAMix: ``max(|1 - mu - lam| - delta, 0) - 2 Var(m)``; AutoMix: the L1 term only. ``m`` is
    the partner weight ``1 - mask`` and ``mu`` its mean over the whole batch (as openmixup).
    Deviation for per-sample λ (the reference has one λ per batch): the L1 term is taken per
    sample (``mu_i`` against ``lam_i``) and averaged; for a scalar λ it is the reference term.
    ``variance="image"``: per-image spatial variance (deviation, docs/algorithm.md), which
    rewards sharp masks, not masks constant inside each image but different between images.
    """
    m = 1 - mask.float()
    n = m.shape[0]
    lam_t = torch.as_tensor(lam, dtype=torch.float32, device=m.device)
    if lam_t.dim() == 0:
        l1 = torch.relu((1 - m.mean() - lam_t).abs() - margin)
    else:
        lam_t = as_lam_tensor(lam_t, n, m.device)
        mu_i = m.reshape(n, -1).mean(dim=1)
        l1 = torch.relu((1 - mu_i - lam_t).abs() - margin).mean()
    if variant == "automix":
        return l1
    if variance == "image":
        var = m.reshape(n, -1).var(dim=1, unbiased=False).mean()
    else:
        var = ((m - m.mean()) ** 2).mean()
    return l1 - 2 * var


class MaskSettings(Protocol):
    """What the mixer losses read of a mixer's settings (``samix_hub.models.MixerConfig`` is one)."""

    @property
    def variant(self) -> str: ...
    @property
    def mask_loss_margin(self) -> float: ...
    @property
    def variance(self) -> str: ...


def weighted_mask_loss(
    mask: torch.Tensor, lam: float | torch.Tensor, settings: MaskSettings, weight: float
) -> torch.Tensor:
    """``weight`` x :func:`mask_regulariser` with the mixer's margin, variant and variance."""
    reg = mask_regulariser(
        mask, lam, margin=settings.mask_loss_margin, variant=settings.variant,
        variance=settings.variance,
    )  # fmt: skip
    return weight * reg


def mixer_losses(
    logits: torch.Tensor,
    mask: torch.Tensor,
    label_a: torch.Tensor,
    label_b: torch.Tensor,
    lam: float,
    settings: MaskSettings,
    *,
    eta: float,
    weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A labelled mixer's loss on the scorer's ``logits`` of the mixed batch and its weighted
    mask regulariser: η-balanced (AutoMix: mixup CE) with labels ``(a, b, λ)``
    (docs/algorithm.md "Online supervised SAMix", step 4; paper Eq. 7)."""
    if settings.variant == "automix":
        loss = mixup_cross_entropy(logits, label_a, label_b, lam)
    else:
        loss = eta_balanced_mixup_loss(logits, label_a, label_b, lam, eta)
    return loss, weighted_mask_loss(mask, lam, settings, weight)


def ssl_mixer_losses(
    query: torch.Tensor,
    key_a: torch.Tensor,
    key_b: torch.Tensor,
    queue: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    settings: MaskSettings,
    *,
    eta: float,
    weight: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The label-free mixer's loss (:func:`ssl_eta_balanced_loss` of the mixed ``query``) and
    its weighted mask regulariser (docs/algorithm.md "Self-supervised SAMix")."""
    loss = ssl_eta_balanced_loss(query, key_a, key_b, queue, lam, eta, temperature)
    return loss, weighted_mask_loss(mask, lam, settings, weight)
