"""Training on several processes: Trainer flags, ranks, each process's share of an epoch
and the log of what it drew."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lesionkit.distributed import (
    SAMPLE_LOG,
    EpochSampler,
    ShardedBatches,
    process_rank,
    shard,
    trainer_flags,
)
from lesionkit.io import InputError


def test_trainer_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.strategies import DDPStrategy

    assert trainer_flags("cpu") == {
        "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
        "precision": "32-true", "use_distributed_sampler": False}
    cpu = trainer_flags("cpu", devices=4, amp=True)
    assert isinstance(cpu["strategy"], DDPStrategy)
    assert cpu["strategy"].process_group_backend == "gloo"
    assert (cpu["devices"], cpu["precision"]) == (4, "bf16-mixed")
    assert isinstance(trainer_flags("cpu", nodes=2)["strategy"], DDPStrategy)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    flags = trainer_flags("cuda", devices=2, nodes=3, amp=True)
    assert flags["strategy"] == "ddp" and flags["precision"] == "16-mixed"
    assert (flags["accelerator"], flags["devices"], flags["num_nodes"]) == ("cuda", 2, 3)
    assert trainer_flags("auto", devices=1)["strategy"] == "auto"
    with pytest.raises(InputError, match="--devices 4: expected at most the 2 CUDA"):
        trainer_flags("cuda", devices=4)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(InputError, match="--device cuda: expected a CUDA device"):
        trainer_flags("cuda", devices=2)


def test_single_process_is_rank_zero_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_PROCID", "3")  # a single process ignores launchers' variables
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_rank(trainer_flags("cpu")) == (0, 1)


def test_rank_of_a_process_started_by_lightning_or_torchrun(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 0)  # the probe sets it; restored after
    for name in ("SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID", "RANK",
                 "GROUP_RANK", "WORLD_SIZE", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")  # as Lightning's launcher starts rank 1
    assert process_rank(trainer_flags("cpu", devices=2)) == (1, 2)
    assert rank_zero_only.rank == 1
    monkeypatch.setenv("NODE_RANK", "1")
    assert process_rank(trainer_flags("cpu", devices=2, nodes=2)) == (3, 4)
    for name, value in (("TORCHELASTIC_RUN_ID", "x"), ("RANK", "5"), ("GROUP_RANK", "2"),
                        ("LOCAL_WORLD_SIZE", "2"), ("WORLD_SIZE", "6")):
        monkeypatch.setenv(name, value)  # torchrun on the third of three machines
    assert process_rank(trainer_flags("cpu", devices=2, nodes=3)) == (5, 6)


def test_shard_pads_by_wrapping_around() -> None:
    assert shard(list(range(5)), 0, 2) == [0, 2, 4]
    assert shard(list(range(5)), 1, 2) == [1, 3, 0]
    assert shard([7], 2, 3) == [7]
    assert shard(list(range(5)), 0, 1) == list(range(5))
    assert shard([], 1, 2) == []


@pytest.mark.parametrize("items", [6, 7])
def test_epoch_sampler_ranks_split_the_single_process_epoch(items: int) -> None:
    data = list(range(10))
    whole = EpochSampler(data, items, seed=3)
    ranks = [EpochSampler(data, items, seed=3, rank=r, world=2) for r in (0, 1)]
    for epoch in (0, 1, 4):
        for sampler in (whole, *ranks):
            sampler.set_epoch(epoch)
        order = list(whole)
        shares = [list(s) for s in ranks]
        assert [len(s) for s in shares] == [len(s) for s in ranks] == [-(-items // 2)] * 2
        # every example of the epoch once; an odd epoch repeats its first example
        assert sorted(shares[0] + shares[1]) == sorted(order + order[: items % 2])
        assert shares[0] + shares[1] != order  # interleaved, not halves
        for sampler in ranks:
            sampler.set_epoch(epoch)
        assert [list(s) for s in ranks] == shares  # the same again: seeded by the epoch


def test_single_process_sampler_order_is_the_seeded_permutation() -> None:
    sampler = EpochSampler(list(range(9)), 9, seed=5)
    sampler.set_epoch(2)
    expected = torch.randperm(9, generator=torch.Generator().manual_seed(5 + 104729 * 2))
    assert list(sampler) == expected.tolist() and len(sampler) == 9


def test_class_balanced_batches_are_shared_out_by_batch() -> None:
    import numpy as np

    from lesionkit.tasks.strategies import ClassBalancedBatches

    positive = np.arange(20) % 4 == 0

    def batches() -> ClassBalancedBatches:
        return ClassBalancedBatches(positive, batch_size=4, positives=1, items=20, seed=1)

    whole = ShardedBatches(batches())
    ranks = [ShardedBatches(batches(), rank, 2) for rank in (0, 1)]
    for epoch in (0, 3):
        for sampler in (whole, *ranks):
            sampler.set_epoch(epoch)
        order = list(whole)
        shares = [list(s) for s in ranks]
        assert [len(s) for s in shares] == [len(s) for s in ranks] == [3, 3]
        assert shares[0] + shares[1][:2] == [order[i] for i in (0, 2, 4, 1, 3)]
        assert shares[1][2] == order[0]  # 5 batches: rank 1 repeats the first
        assert all(sum(positive[i] for i in batch) == 1 for batch in shares[0] + shares[1])
    whole.set_epoch(0)
    assert list(whole) == list(batches())  # a single process: the sampler's own batches


def test_sample_log_records_each_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SAMPLE_LOG, str(tmp_path))
    sampler = EpochSampler(list(range(4)), 4, seed=0, rank=1, world=2)
    sampler.set_epoch(1)
    drawn = list(sampler)
    (line,) = (tmp_path / "rank-1.jsonl").read_text().splitlines()
    assert json.loads(line) == {"epoch": 1, "indices": drawn}
