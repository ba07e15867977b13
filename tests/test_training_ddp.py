"""Distributed training: two CPU processes (DDP over gloo) started by Lightning's launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import write_fcd_dataset
from lesionkit.distributed import SAMPLE_LOG

LESIONKIT = str(Path(sys.executable).parent / "lesionkit")


def _run(command: list[str], env: dict[str, str], timeout: float = 600) -> str:
    """Run a lesionkit command in its own process group (all of it killed on a hang)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # a rank waiting for another forever
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(command[1:3])} hung for {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_cpu_processes_share_every_epoch_and_rank_zero_writes_the_model(
        tmp_path: Path) -> None:
    data = write_fcd_dataset(tmp_path / "bids", subjects=10)  # 8 training, 2 validation
    model, log, scratch = tmp_path / "model", tmp_path / "samples", tmp_path / "tmp"
    log.mkdir()
    scratch.mkdir()
    env = {**os.environ, SAMPLE_LOG: str(log), "TMPDIR": str(scratch)}
    start = time.perf_counter()
    output = _run([LESIONKIT, "train", "fcd-classify", str(data), str(model), "--device", "cpu",
                   "--devices", "2", "--folds", "1", "--epochs", "2", "--batch-size", "2",
                   "--network", "resnet10", "--widen-factor", "0.25", "--no-progress"], env)
    seconds = time.perf_counter() - start
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output  # a second process joined
    assert output.count("wrote ") == 1  # rank 0 alone reports

    config = yaml.safe_load((model / "config.yaml").read_text())
    names = config["folds"][0]["train"]
    assert len(names) == 8
    ranks = {r: _records(log / f"rank-{r}.jsonl") for r in (0, 1)}
    assert set(os.listdir(log)) == {"rank-0.jsonl", "rank-1.jsonl"}
    drawn = {r: [x for x in records if "indices" in x] for r, records in ranks.items()}
    steps = {r: [x["steps"] for x in records if "steps" in x] for r, records in ranks.items()}
    assert steps[0] == steps[1] == [2, 4]  # 4 subjects a rank, 2 a step, same steps
    for epoch in (0, 1):
        shares = [drawn[r][epoch]["indices"] for r in (0, 1)]
        assert [drawn[r][epoch]["epoch"] for r in (0, 1)] == [epoch, epoch]
        assert len(shares[0]) == len(shares[1]) == 4
        assert sorted(shares[0] + shares[1]) == list(range(8))  # each subject once
    assert drawn[0][0]["indices"] != drawn[0][1]["indices"]  # a new order every epoch
    print(f"2-process CPU DDP: {seconds:.1f} s; steps per rank per epoch {steps}; subjects "
          + "; ".join(f"epoch {e} rank {r}: {[names[i] for i in drawn[r][e]['indices']]}"
                      for e in (0, 1) for r in (0, 1)))

    # The model folder, from rank 0 alone: complete, and nothing of rank 1 left anywhere.
    assert config["training"]["complete"] is True
    assert (config["training"]["devices"], config["training"]["nodes"]) == (2, 1)
    assert sorted(p.name for p in model.iterdir()) == ["config.yaml", "fold-0", "metrics.json"]
    fold = model / "fold-0"
    assert sorted(p.name for p in fold.iterdir()) == ["checkpoints", "metrics.csv",
                                                       "weights.safetensors"]
    assert [p.name for p in (fold / "checkpoints").iterdir()] == ["last.ckpt"]
    assert len((fold / "metrics.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert json.loads((model / "metrics.json").read_text())["fold-0"]["steps"] == 4
    assert not [p for p in scratch.iterdir() if p.name.startswith("lesionkit-cache")]

    predictions = tmp_path / "predictions"
    _run([LESIONKIT, "predict", str(model), str(data), "--device", "cpu", "--out-dir",
          str(predictions)], dict(os.environ))
    assert len(list(predictions.rglob("*_probseg.nii.gz"))) >= 10
