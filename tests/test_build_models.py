"""The held-out summary printed for shipped models and by the demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesionkit import evaluation
from lesionkit.build_models import scored_summary
from lesionkit.io import write_json
from lesionkit.summaries import summarise


def test_lesion_rows_are_pooled_and_empty_methods_left_out(tmp_path: Path, monkeypatch) -> None:
    rows = [{"participant_id": "sub-01", "lesion": i, "label": int(i < 2), "probability": p}
            for i, p in enumerate([0.9, 0.6, 0.2, 0.1])]
    path = write_json({"rows": rows, "summary": summarise(rows)}, tmp_path / "metrics.json")
    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: (None, path))
    summary = scored_summary(None, tmp_path, ["01"], shown=("rim_positive",))
    assert list(summary) == ["pooled"]  # the per-lesion means had nothing to show
    assert summary["pooled"]["accuracy"] == pytest.approx(1.0)
    assert (summary["pooled"]["positives"], summary["pooled"]["cases"]) == (2, 4)


def test_held_out_subjects_are_the_last_in_numeric_order() -> None:
    from lesionkit.build_models import held_out_split

    names = [f"{i:02d}" for i in range(1, 121)]  # a phantom cohort: 01 ... 99, 100 ... 120
    training, held_out = held_out_split(list(reversed(names)), 25)
    assert held_out == names[-25:] and training == names[:-25]
    assert held_out_split(["b", "a", "03"], 1) == (["a", "b"], ["03"])


def test_train_models_script_refuses_bad_options_in_one_line(capsys, tmp_path: Path) -> None:
    from conftest import load_script

    module = load_script(Path(__file__).parents[1] / "scripts" / "train_models.py",
                         "lesionkit_train_models")
    assert module.main(["--workers", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers: expected 0 or more, found -1"
    assert module.main(["--only", "brain-age"]) == 2
    assert "--only: expected some of enhance-r1" in capsys.readouterr().err
    empty = tmp_path / "none"
    assert module.main(["--rescore", "--only", "enhance-r1", "--out", str(empty),
                        "--work", str(tmp_path / "work")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: --rescore: {empty / 'enhance-r1'}: expected a shipped model folder with "
        "provenance.json, found none")
    assert not (tmp_path / "work").exists()  # nothing simulated


def test_weights_are_stored_at_half_precision_and_load_into_the_float32_network(
        tmp_path: Path) -> None:
    import torch

    from lesionkit.build_models import store_half_precision
    from lesionkit.model_folder import load_tensors, load_weights, save_tensors, save_weights

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.BatchNorm3d(4))
    network.eval()
    save_weights(network, tmp_path / "fold-0" / "weights.safetensors")
    save_tensors({"mean": torch.tensor([1e-9, 7e5])}, tmp_path / "fold-0" / "state.safetensors")
    before = (tmp_path / "fold-0" / "weights.safetensors").stat().st_size
    assert store_half_precision(tmp_path) == 6  # 2 conv + 4 batch-norm float tensors
    stored = load_tensors(tmp_path / "fold-0" / "weights.safetensors")
    assert stored["0.weight"].dtype == torch.float16
    assert stored["1.num_batches_tracked"].dtype == torch.int64  # integers stay
    assert load_tensors(tmp_path / "fold-0" / "state.safetensors")["mean"].dtype == torch.float32
    assert (tmp_path / "fold-0" / "weights.safetensors").stat().st_size < before
    copy = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.BatchNorm3d(4)).eval()
    load_weights(copy, tmp_path / "fold-0" / "weights.safetensors")
    assert copy[0].weight.dtype == torch.float32
    x = torch.randn(1, 1, 6, 6, 6)
    with torch.no_grad():
        assert torch.allclose(copy(x), network(x), rtol=0, atol=2e-3)
    assert store_half_precision(tmp_path) == 0  # nothing left to convert


def test_tensors_a_float16_cannot_hold_stay_float32(tmp_path: Path) -> None:
    import torch

    from lesionkit.build_models import store_half_precision
    from lesionkit.model_folder import load_tensors, save_tensors

    path = tmp_path / "weights.safetensors"
    save_tensors({"big": torch.tensor([1e5]), "inf": torch.tensor([float("inf")]),
                  "small": torch.tensor([0.5])}, path)
    assert store_half_precision(tmp_path) == 1
    dtypes = {k: v.dtype for k, v in load_tensors(path).items()}
    assert dtypes == {"big": torch.float32, "inf": torch.float32, "small": torch.float16}
