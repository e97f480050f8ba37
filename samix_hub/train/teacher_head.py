"""A new linear head for a frozen teacher whose classes are not the data's (train/teacher.py).

The head is fitted on the teacher's frozen pooled (pre-logits) features of the training split,
extracted once without augmentation (as :mod:`samix_hub.train.linear_probe`), by full-batch
L-BFGS: deterministic and seconds on CPU. The teacher with this head scores the mixed images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from samix_hub.data.specs import DataSource
from samix_hub.errors import UserError
from samix_hub.models.classifier import Classifier, timm_method
from samix_hub.train.config import TrainConfig
from samix_hub.train.knn import extract_features
from samix_hub.train.loader import eval_loader, eval_transform
from samix_hub.train.pretrained import PretrainedBackbone

__all__ = ["head_mismatch", "pooled_features", "fit_linear_head", "fit_teacher_head"]


def head_mismatch(bb: PretrainedBackbone, data: DataSource) -> str | None:
    """Why the teacher's head cannot score ``data`` (None when it can)."""
    k = int(getattr(bb.net, "num_classes", 0) or 0)
    if k == 0:
        return "the teacher has no classifier head"
    if k != data.num_classes:
        return f"the teacher has {k} classes, the data {data.num_classes}"
    if bb.class_names is not None and list(bb.class_names) != [str(c) for c in data.class_names]:
        return "the teacher's class names differ from the data's"
    return None


@torch.no_grad()
def pooled_features(
    teacher: Classifier,
    dataset: Any,
    image_size: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-logits (pooled) features of the frozen teacher and the labels, over ``dataset``."""
    net: Any = teacher.net

    def encode(x: torch.Tensor) -> torch.Tensor:
        return net.forward_head(net.forward_features(teacher.normalize(x)), pre_logits=True)

    h, w = image_size
    batches = eval_loader(dataset, eval_transform((h, w)), batch_size, 0)
    feats, labels = extract_features(encode, batches, device)
    return feats.cpu(), labels.cpu().long()


def fit_linear_head(
    feats: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on frozen features -> (weight K x C, bias K).

    Full-batch L-BFGS (strong Wolfe) from zero on standardised features, then the standardisation
    is folded into the weights. Deterministic: no random state (zero start, full batch).
    """
    mu = feats.mean(0)
    sd = feats.std(0, unbiased=False).clamp_min(1e-6)
    z = (feats - mu) / sd
    w = torch.zeros(z.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, labels) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    weight = (w.detach() / sd[:, None]).T.contiguous()
    bias = b.detach() - (mu / sd) @ w.detach()
    return weight, bias


def install_head(net: nn.Module, weight: torch.Tensor, bias: torch.Tensor, src: str) -> None:
    timm_method(net, "reset_classifier")(weight.shape[0])
    head = timm_method(net, "get_classifier")()
    if not isinstance(head, nn.Linear) or head.in_features != weight.shape[1]:
        raise UserError(f"--teacher {src}: its classifier is not one linear layer; cannot refit")
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight))
        head.bias.copy_(bias.to(head.bias))
    head.requires_grad_(False)


def _accuracy(feats: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return 100.0 * float(((feats @ w.T + b).argmax(1) == labels).float().mean())


def fit_teacher_head(
    teacher: Classifier, data: DataSource, cfg: TrainConfig, reason: str
) -> dict[str, Any]:
    """Fit and install a new head for ``data`` (see :func:`fit_linear_head`); what it scored."""
    device = next(teacher.parameters()).device
    bs = cfg.eval_batch_size
    tr_f, tr_y = pooled_features(teacher, data.train, data.image_size, bs, device)
    w, b = fit_linear_head(tr_f, tr_y, data.num_classes)
    out: dict[str, Any] = {
        "fitted": True,
        "reason": reason,
        "method": "L-BFGS logistic regression on frozen pooled features (l2 1e-3)",
        "features": int(tr_f.shape[1]),
        "train_images": int(tr_f.shape[0]),
        "train_top1": _accuracy(tr_f, tr_y, w, b),
    }
    if data.test is not None:
        te_f, te_y = pooled_features(teacher, data.test, data.image_size, bs, device)
        out["test_top1"] = _accuracy(te_f, te_y, w, b)
    install_head(teacher.net, w, b, str(cfg.teacher))
    return out
