"""What a run writes at each evaluation besides ``metrics.jsonl``: ``curves.png`` always, and
the sinks of ``--log``: ``metrics.csv`` (``csv``) and TensorBoard event files under
``tensorboard/`` (``tensorboard``; needs the ``tensorboard`` extra).

Every sink is rebuilt from the run's (already truncated) ``metrics.jsonl`` when a run starts or
resumes, so a resumed run has no duplicated rows: the CSV file is rewritten from it, and
TensorBoard is told to drop what it held past the resumed step (``purge_step``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from samix_hub.errors import TENSORBOARD_EXTRA, UserError, missing_extra_message
from samix_hub.export.curves import save_curves
from samix_hub.fileio import append_line, atomic_write_text
from samix_hub.format.run import (
    CSV_NAME,
    CURVES_NAME,
    LOG_SINKS,
    METRICS_NAME,
    STEPS_NAME,
    TENSORBOARD_DIR,
)
from samix_hub.train.checkpoint import read_jsonl

__all__ = ["RunLog", "check_sinks", "csv_text"]


def check_sinks(sinks: Iterable[str]) -> tuple[str, ...]:
    """The sinks, checked: a known name each, and TensorBoard importable when asked for."""
    sinks = tuple(dict.fromkeys(sinks))
    unknown = [s for s in sinks if s not in LOG_SINKS]
    if unknown:
        raise UserError(f"--log {unknown[0]!r}: not one of {', '.join(LOG_SINKS)}")
    if "tensorboard" in sinks:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise UserError(
                missing_extra_message("tensorboard", TENSORBOARD_EXTRA, "--log tensorboard")
            ) from None
    return sinks


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str)) or value is None


def csv_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every scalar key of ``rows`` in order of first appearance (lists such as the mask means
    per λ stay in ``metrics.jsonl``)."""
    return list(dict.fromkeys(k for r in rows for k, v in r.items() if _scalar(v)))


def _csv_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buffer.getvalue()


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """The CSV file of ``rows``: a header line, then one line per row (missing values empty)."""
    return _csv_rows([{c: c for c in columns}], columns) + _csv_rows(rows, columns)


class RunLog:
    """The per-evaluation outputs of one run (rank 0 only): create it after ``metrics.jsonl``
    and ``steps.jsonl`` hold what the run has done so far; call :meth:`step` for each step,
    :meth:`evaluation` after each record is appended to ``metrics.jsonl``, then :meth:`close`."""

    def __init__(self, run_dir: Path, sinks: Sequence[str], start_step: int) -> None:
        self.run_dir = run_dir
        self.sinks = tuple(sinks)
        self.metrics: list[dict[str, Any]] = read_jsonl(run_dir / METRICS_NAME)
        #: (step, loss, lr) of every step so far, for the curves
        self.steps: list[dict[str, float]] = [
            {k: r[k] for k in ("step", "loss", "lr") if k in r}
            for r in read_jsonl(run_dir / STEPS_NAME)
        ]
        self.columns: list[str] = []
        if not self.metrics:  # a new run: what an earlier attempt in this run folder drew goes
            for name in (CURVES_NAME, CSV_NAME):
                (run_dir / name).unlink(missing_ok=True)
        elif "csv" in self.sinks:
            self._rewrite_csv()
        self.writer: Any = None
        if "tensorboard" in self.sinks:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard drops the events an earlier attempt wrote after the step
            # this run starts from (those the checkpoint does not hold)
            self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=start_step + 1)
        if self.metrics:
            self._draw()  # a picture that matches the (truncated) metrics of a resumed run

    @property
    def csv_path(self) -> Path:
        return self.run_dir / CSV_NAME

    def step(self, step: int, loss: float, lr: float) -> None:
        """Remember one training step's loss and learning rate (for the curves)."""
        self.steps.append({"step": step, "loss": loss, "lr": lr})

    def evaluation(self, record: dict[str, Any]) -> None:
        """One evaluation's record (as appended to ``metrics.jsonl``) to every sink."""
        self.metrics.append(record)
        if "csv" in self.sinks:
            if set(csv_columns([record])) <= set(self.columns):
                append_line(self.csv_path, _csv_rows([record], self.columns).rstrip("\n"))
            else:  # a new key: the header changes, so the file is written again
                self._rewrite_csv()
        if self.writer is not None:
            step = int(record["step"])
            for key, value in record.items():
                if key not in ("step", "epoch") and _number(value):
                    self.writer.add_scalar(key, float(value), global_step=step)
            self.writer.flush()
        self._draw()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _rewrite_csv(self) -> None:
        self.columns = csv_columns(self.metrics)
        atomic_write_text(self.csv_path, csv_text(self.metrics, self.columns))

    def _draw(self) -> None:
        save_curves(self.run_dir / CURVES_NAME, self.metrics, self.steps)


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
