"""training.agreement: two models' scores on the same faces, on hand-computed cases and on shared faces."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, needs_data, needs_weights
from training.agreement import agreement, main

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_agreement_counts_differences_and_decisions_that_cross_the_threshold() -> None:
    a = np.array([0.1, 0.4, 0.6, 0.9])
    b = np.array([0.2, 0.6, 0.6, 0.5])  # the second face crosses 0.5 upwards, the fourth stays on its side
    found = agreement(a, b, 0.5)
    assert found.faces == 4
    assert found.mean_difference == pytest.approx((0.1 + 0.2 + 0.0 + 0.4) / 4)
    assert found.max_difference == pytest.approx(0.4)
    assert found.decisions_differ == pytest.approx(0.25)
    assert agreement(a, b, 0.55).decisions_differ == pytest.approx(0.5)  # at 0.55 the fourth (0.9 -> 0.5) crosses too
    assert agreement(a, a, 0.5).decisions_differ == 0.0 and agreement(a, a, 0.5).correlation == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        agreement(a, b[:3], 0.5)


@needs_data
@needs_weights
def test_agreement_of_a_model_and_other_models_on_shared_faces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.gather_examples import main as gather_main

    gathered = tmp_path / "gathered"
    assert gather_main(["--input", str(DATA / "faces" / "trickyf0x"), "--crops", "--output", str(gathered),
                        "--size", "56", "--scales", "1.5", "2.7"]) == 0
    copy = tmp_path / "copy.onnx"
    shutil.copy(MODELS / "liveness.onnx", copy)
    assert main([str(MODELS / "liveness.onnx"), str(copy), "--data", str(gathered)]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.split()[0] == "all")
    faces, mean, largest, _, differ = line.split()[1:]
    assert int(faces) > 20 and float(mean) == 0.0 and float(largest) == 0.0 and differ == "0.00%"
    with pytest.raises(SystemExit) as stopped:  # 64 px crops: not the same faces' scores
        main([str(MODELS / "liveness.onnx"), str(MODELS / "liveness_fast.onnx"), "--data", str(gathered)])
    assert stopped.value.code == 2
    assert "cuts its crops as (64" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main([str(MODELS / "liveness.onnx"), str(tmp_path / "missing.onnx"), "--data", str(gathered)])
    assert stopped.value.code == 2 and "not found" in capsys.readouterr().err
