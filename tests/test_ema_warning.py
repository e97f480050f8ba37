"""The short-run EMA warning of the training loop."""

from __future__ import annotations

from types import SimpleNamespace

from samix_hub.train.optim import suggest_momentum, warn_short_ema


def _cfg(momentum: float, method: str = "samix") -> SimpleNamespace:
    return SimpleNamespace(scenario="sl", method=method, ema_momentum=momentum)


def test_warns_only_when_the_ema_horizon_is_long(capsys):
    warn_short_ema(_cfg(0.999), total=176, show=True)
    err = capsys.readouterr().err
    assert "averages over ~1000 steps but the run has 176" in err
    assert "--ema-momentum 0.9 " in err  # 2 % of 176 steps is under 10: the floor
    warn_short_ema(_cfg(0.95), total=176, show=True)  # horizon 20 <= 44
    warn_short_ema(_cfg(0.999), total=100_000, show=True)
    warn_short_ema(_cfg(0.999, method="mixup"), total=176, show=True)  # no mixer, no EMA role
    warn_short_ema(_cfg(0.999), total=176, show=False)
    assert capsys.readouterr().err == ""


def test_suggested_horizon_is_about_two_percent_of_the_run():
    assert suggest_momentum(100_000) == 0.999
    assert suggest_momentum(5_000) == 0.99
    assert suggest_momentum(200) == 0.9
