"""What a training run shows while it runs: a progress bar or lines on stderr (`Progress`)
and, optionally, TensorBoard event files (`EventLog`)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from gsmorph.errors import GSMorphError


class Progress:
    """Epoch progress: a tqdm bar on a terminal; otherwise (job logs) a line at every
    validation, at the last epoch and at least every `every_s` seconds, with the epoch,
    the losses, the last validation Dice and the time left."""

    def __init__(self, done: int, total: int, label: str, every_s: float = 10.0):
        from tqdm.auto import tqdm

        self.total, self.first, self.every_s = total, done, every_s
        self.start = self.last_line = time.perf_counter()
        self.val_dice: float | None = None
        self.bar = tqdm(range(done, total), desc=label, unit="epoch", disable=not sys.stderr.isatty(),
                        initial=done, total=total)

    def eta_s(self, epoch: int) -> float:
        """Seconds left at the mean pace of this session's epochs."""
        done = epoch - self.first
        return (time.perf_counter() - self.start) / max(done, 1) * (self.total - epoch)

    def update(self, epoch: int, losses: dict[str, float], val_dice: float | None) -> None:
        self.val_dice = val_dice if val_dice is not None else self.val_dice
        shown = {k: f"{v:.4g}" for k, v in losses.items()}
        shown["val_dice"] = "-" if self.val_dice is None else f"{self.val_dice:.4f}"
        self.bar.update(1)
        self.bar.set_postfix(shown)
        now = time.perf_counter()
        if self.bar.disable and (val_dice is not None or epoch == self.total or now - self.last_line >= self.every_s):
            self.last_line = now
            eta = self.eta_s(epoch)
            print(f"epoch {epoch}/{self.total} " + " ".join(f"{k}={v}" for k, v in shown.items())
                  + f" eta={int(eta // 60)}m{int(eta % 60):02d}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


class EventLog:
    """Optional TensorBoard event files (config `tensorboard: true`) in <run>/tensorboard/:
    the losses per epoch and the validation Dice and NJD."""

    def __init__(self, folder: Path, enabled: bool):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise GSMorphError(f"config key 'tensorboard': needs the tensorboard package ({err}); "
                                   "pip install tensorboard") from None
            self.writer = SummaryWriter(log_dir=str(folder))

    def epoch(self, epoch: int, losses: dict[str, float], val: tuple[float, float] | None) -> None:
        if self.writer is None:
            return
        for key, value in losses.items():
            self.writer.add_scalar(f"train/{key}", value, epoch)
        if val is not None:
            self.writer.add_scalar("val/dice", val[0], epoch)
            self.writer.add_scalar("val/njd_pct", val[1], epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
