"""The Lightning callbacks of :func:`lesionkit.training.train`: the epoch log and the
weights it keeps, the per-epoch checkpoint and seeds that make a resumed run continue
exactly, a timer for this run only, Ctrl-C, and the check that every DDP process prepared
the same fold."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L  # noqa: N812

from lesionkit.distributed import RANK_SEED_STEP, log_samples
from lesionkit.io import InputError, atomic_path
from lesionkit.model_folder import save_weights


class EpochLog(L.Callback):
    """Append one CSV row per epoch; keep the best weights (or the last, without validation).

    Its state (best loss, rows written) travels in the checkpoint, so that a resumed run
    drops rows of an epoch whose checkpoint was never written and keeps selecting against
    the best loss seen before the interruption.
    """

    def __init__(self, folder: Path, select_best: bool = True) -> None:
        self.folder, self.best, self.start = folder, float("inf"), time.time()
        self.select_best, self.rows = select_best, 0
        self.writer = True  # global rank 0 (set in ``setup``): the one process that writes

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        self.writer = trainer.is_global_zero

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.rows = float(state["best"]), int(state["rows"])
        path = self.folder / "metrics.csv"
        if self.writer and path.is_file():  # header plus the rows of the checkpointed epochs
            lines = path.read_text().splitlines(keepends=True)[: self.rows + 1]
            with atomic_path(path) as tmp:
                tmp.write_text("".join(lines))

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        log_samples(trainer.global_rank, epoch=trainer.current_epoch, steps=trainer.global_step)
        # Reading the epoch's metrics reduces them across DDP processes: all must read.
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "train_loss": metrics.get("train_loss", float("nan")),
               "val_loss": metrics.get("val_loss", float("nan")),
               "seconds": round(time.time() - self.start, 2)}
        improved = row["val_loss"] < self.best
        self.best, self.rows = row["val_loss"] if improved else self.best, self.rows + 1
        if not trainer.is_global_zero:
            return
        path = self.folder / "metrics.csv"
        new = not path.is_file()
        with path.open("a") as handle:
            if new:
                handle.write(",".join(row) + "\n")
            handle.write(",".join(str(v) for v in row.values()) + "\n")
        if improved or not self.select_best:
            save_weights(module.network, self.folder / "weights.safetensors")


class RunTimer(L.pytorch.callbacks.Timer):
    """Lightning's Timer counting this run's training time only: nothing of it goes into
    the checkpoint, so a fold resumed by the next job of a time-limited cluster run gets
    the whole ``--max-minutes`` again."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        return None


class EpochCheckpoint(L.Callback):
    """Write ``checkpoints/last.ckpt`` atomically at the end of every epoch (``--resume``)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "checkpoints" / "last.ckpt"

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            trainer.save_checkpoint(self.path)  # a collective call; only rank zero writes
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            trainer.save_checkpoint(tmp)


class EpochSeeds(L.Callback):
    """Seed every random generator from (seed, epoch) at the start of each epoch.

    An epoch's shuffling, augmentation and dropout then depend on the seed and the epoch
    only, so a run resumed from the end of epoch k continues exactly as an uninterrupted
    run would have. Under DDP each rank's augmentation and dropout also depend on its rank
    (rank 0 draws as a single process does); the order of the examples does not (the
    samplers draw it from their own generators).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        L.seed_everything(self.seed + 7919 * trainer.current_epoch
                          + RANK_SEED_STEP * trainer.global_rank, workers=True, verbose=False)
        # A dataset's own batch sampler (Lightning sets the epoch of plain samplers only).
        batches = getattr(trainer.train_dataloader, "batch_sampler", None)
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(trainer.current_epoch)


class Interrupted(L.Callback):
    """Remember that Lightning stopped on Ctrl-C (it turns it into ``SystemExit``)."""

    seen = False

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule,
                     exception: BaseException) -> None:
        self.seen = self.seen or isinstance(exception, KeyboardInterrupt)


class SameOnEveryRank(L.Callback):
    """Stop a DDP run whose processes prepared different folds (subjects, normalisation).

    Every rank computes its fold itself, seeded, so all agree unless they read different
    data; they compare a fingerprint once the process group is up.
    """

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if trainer.world_size == 1:
            return
        same = trainer.strategy.broadcast(self.fingerprint, src=0) == self.fingerprint
        if not trainer.strategy.reduce_boolean_decision(same, all=True):
            raise InputError("expected every training process to prepare the same subjects "
                             "and normalisation statistics, found differences between ranks "
                             "(do all nodes read the same dataset with the same lesionkit?)")
