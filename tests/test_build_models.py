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


def test_train_models_script_refuses_bad_options_in_one_line(capsys) -> None:
    from conftest import load_script

    module = load_script(Path(__file__).parents[1] / "scripts" / "train_models.py",
                         "lesionkit_train_models")
    assert module.main(["--workers", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers: expected 0 or more, found -1"
    assert module.main(["--only", "brain-age"]) == 2
    assert "--only: expected some of enhance-r1" in capsys.readouterr().err
