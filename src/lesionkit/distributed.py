"""Training on several processes (Lightning's DDP: NCCL on CUDA, gloo on the CPU): the
Trainer flags, this process's rank, each process's share of an epoch (:func:`shard` and
the samplers that use it), the fold fingerprint every rank compares, and the optional
log of the examples each rank drew."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning as L  # noqa: N812
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import RandomSampler

from lesionkit.io import InputError

T = TypeVar("T")

#: Environment variable naming a folder: when set, every process appends the example
#: indices it draws in each epoch and its step count at each epoch's end, one JSON line
#: each, to ``rank-<global rank>.jsonl`` there (a check of the sharding; off by default).
SAMPLE_LOG = "LESIONKIT_SAMPLE_LOG"

#: Seed offset between ranks of the random generators of augmentation and dropout.
RANK_SEED_STEP = 1_000_003


def fold_fingerprint(split: dict[str, list[str]], stats: dict[str, Any], in_channels: int
                     ) -> str:
    """A hash of a fold's subjects, normalisation statistics (6 significant digits) and
    input channels."""

    def rounded(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): rounded(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [rounded(v) for v in value]
        return float(f"{value:.6g}") if isinstance(value, float) else value

    text = json.dumps(rounded([split, stats, in_channels]), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def log_samples(rank: int, **record: Any) -> None:
    """Append ``record`` as a JSON line to ``$LESIONKIT_SAMPLE_LOG/rank-<rank>.jsonl``
    (nothing when the variable is unset)."""
    folder = os.environ.get(SAMPLE_LOG)
    if folder:
        with (Path(folder) / f"rank-{rank}.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """One process's share of an epoch, as torch's ``DistributedSampler`` (no shuffle)
    cuts it: ``items[rank::world]`` once the list is padded, by wrapping around to its
    start, to a multiple of ``world``.

    Every rank gets ``ceil(len(items) / world)`` items, so all take the same number of
    steps (a rank with one step more would wait for the others forever); together they
    hold every item once, plus fewer than ``world`` repeats. The order itself comes from
    lesionkit's seeded samplers, so the sampler only cuts it.
    """
    from torch.utils.data import DistributedSampler

    if world == 1 or not items:
        return list(items)
    positions = DistributedSampler(range(len(items)), num_replicas=world, rank=rank,
                                   shuffle=False)
    return [items[i] for i in positions]


class EpochSampler(RandomSampler):
    """Random order drawn from (seed, epoch): Lightning calls ``set_epoch`` every epoch.

    Every rank of a DDP run draws the same order and keeps its share (:func:`shard`).
    """

    def __init__(self, dataset: Any, num_samples: int, seed: int, rank: int = 0,
                 world: int = 1) -> None:
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0
        super().__init__(dataset, num_samples=num_samples,
                         generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator = torch.Generator().manual_seed(self.seed + 104729 * epoch)

    def __len__(self) -> int:
        return -(-self.num_samples // self.world)

    def __iter__(self) -> Iterator[int]:
        share = shard(list(super().__iter__()), self.rank, self.world)
        log_samples(self.rank, epoch=self.epoch, indices=share)
        return iter(share)


class ShardedBatches:
    """A dataset's own batch sampler (``dataset.batches``) cut to one process's share of
    each epoch's batches (:func:`shard`); ``set_epoch`` reaches the sampler inside."""

    def __init__(self, batches: Any, rank: int = 0, world: int = 1) -> None:
        self.batches, self.rank, self.world, self.epoch = batches, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.batches) // self.world)

    def __iter__(self) -> Iterator[list[int]]:
        share = shard(list(self.batches), self.rank, self.world)
        log_samples(self.rank, epoch=self.epoch, indices=[i for batch in share for i in batch])
        return iter(share)


def trainer_flags(device: str = "auto", devices: int = 1, nodes: int = 1, amp: bool = False,
                  max_minutes: float | None = None) -> dict[str, Any]:
    """Lightning Trainer flags: accelerator, processes, DDP, mixed precision and a time cap.

    More than one process in all trains with DDP (NCCL on CUDA, gloo on CPU). The
    samplers give each process its share of every epoch themselves, so Lightning's
    distributed sampler stays off.

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda".
        devices: Processes per machine: CUDA devices, or CPU processes on the CPU.
        nodes: Machines (Lightning's ``num_nodes``).
        amp: Mixed precision: float16 on CUDA, bfloat16 on the CPU.
        max_minutes: Training time (minutes) after which a fit stops (a job's time
            limit on a cluster): ``max_time``, which :func:`train_fold` turns into a
            :class:`RunTimer`; None: no cap.

    Raises:
        InputError: CUDA asked for on a machine without it, more CUDA devices than the
            machine has, or a time cap that is not positive.
    """
    if max_minutes is not None and not max_minutes > 0:
        raise InputError(f"--max-minutes {max_minutes}: expected a positive number of minutes")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    found = torch.cuda.device_count() if cuda else 0
    if cuda and not found:
        raise InputError("--device cuda: expected a CUDA device, found none on this machine "
                         "(use --device cpu or auto)")
    if cuda and devices > found:
        raise InputError(f"--devices {devices}: expected at most the {found} CUDA device(s) of "
                         f"this machine, found {devices} asked for (--device cpu runs CPU "
                         "processes)")
    strategy: Any = "auto"
    if devices * nodes > 1:
        strategy = "ddp" if cuda else DDPStrategy(process_group_backend="gloo")
    precision = ("16-mixed" if cuda else "bf16-mixed") if amp else "32-true"
    cap = {} if max_minutes is None else {"max_time": datetime.timedelta(minutes=max_minutes)}
    return {"accelerator": "cuda" if cuda else "cpu", "devices": devices, "num_nodes": nodes,
            "strategy": strategy, "precision": precision, "use_distributed_sampler": False, **cap}


def process_rank(flags: dict[str, Any]) -> tuple[int, int]:
    """This process's global rank and the number of processes, under Trainer ``flags``.

    Known before training starts, from Lightning's own cluster environment (a Trainer
    that is never fitted): the variables Lightning's launcher gives the processes it
    starts (``LOCAL_RANK``, ``NODE_RANK``), SLURM's (``SLURM_PROCID``) or torchrun's
    (``RANK``). A single process is rank 0 of 1 whatever its environment.
    """
    if flags["devices"] * flags["num_nodes"] == 1:
        return 0, 1
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    probe = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, **flags)
    return probe.global_rank, probe.world_size
