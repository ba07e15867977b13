"""benchmarks/enhance_r1_losses.py: which subjects a larger cohort trains on."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "enhance_r1_losses.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_er_losses")


def _participants(root: Path, groups: list[str]) -> Path:
    lines = ["participant_id\tgroup"] + [f"sub-{i + 1:02d}\t{g}" for i, g in enumerate(groups)]
    root.mkdir()
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_sixteen_subjects_train_on_the_documented_controls(bench, tmp_path):
    groups = ["fcd" if i % 3 == 1 else "control" for i in range(16)]  # the cohort's rule
    assert bench.training_subjects(_participants(tmp_path / "er16", groups)) == bench.TRAIN


def test_larger_cohort_adds_controls_and_never_the_held_out(bench, tmp_path):
    groups = ["fcd" if i % 3 == 1 else "control" for i in range(100)]
    names = bench.training_subjects(_participants(tmp_path / "er100", groups))
    assert names[: len(bench.TRAIN)] == bench.TRAIN
    assert not set(names) & set(bench.HELD_OUT)
    assert len(names) == 65  # 67 controls, two of them held out (15, 16)
    assert "17" not in names and "18" in names  # sub-17 is a patient


def test_adversarial_loss_trains_its_discriminator_only_in_training(bench):
    import torch

    torch.manual_seed(0)
    loss = bench.AdversarialLoss(adversarial_weight=0.05)
    target = torch.randn(2, 1, 16, 16, 16)
    prediction = torch.randn(2, 1, 16, 16, 16, requires_grad=True)
    before = [p.detach().clone() for p in loss.discriminator.parameters()]
    loss.eval()
    voxel = loss(prediction, target)  # validation: the voxel terms alone, nothing trained
    assert torch.allclose(voxel, bench.losses.GradientL1Loss()(prediction, target))
    pairs = lambda: zip(before, loss.discriminator.parameters(), strict=True)  # noqa: E731
    assert all(torch.equal(a, b) for a, b in pairs())
    loss.train()
    total = loss(prediction, target)
    assert total > voxel  # the generator's adversarial term is added
    assert any(not torch.equal(a, b) for a, b in pairs())
    total.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0


def test_on_input_network_adds_its_output_to_the_input(bench):
    import torch

    network = bench.unet_on_input(1, 1, **bench.SMALL_UNET)
    for p in network.network.parameters():
        torch.nn.init.zeros_(p)  # a network that outputs zero passes its input through
    x = torch.randn(1, 1, 16, 16, 16)
    network.eval()
    assert torch.allclose(network(x), x)
