"""The scaling guide's arithmetic (data_prep/bench/scaling.py) against hand computations: the
worker model of each stage from a given measured-figures dict, the growth fit on figures with a
known exponent, and refusal of bad input. No timing is measured or asserted."""
import math

import pytest

from data_prep.bench import scaling
from data_prep.bench.scaling import DatasetSize, Figure


def _stage(coefficient, exponent, sizes, load_s, **extra):
    return {"fit": {"coefficient": coefficient, "exponent": exponent}, "sizes": sizes, "load_s": load_s, **extra}


MEASURED = {"import_s": 5.0, "stages": {
    "detect": _stage(0.01, 0.0, [1, 1e7], 2.0),        # 10 ms per frame at any resolution
    "audio": _stage(0.05, 1.0, [0.1, 1e3], 1.0),       # 50 ms per second of audio
    "features": _stage(1e-6, 1.0, [1, 1e6], 3.0),      # 1 us per input pixel
    "train_step": _stage(0.1, 1.0, [1, 1e3], 4.0, batch=2, params=1_000_000),  # 0.1 s per frame of T
}}
F = lambda v: Figure(v, "test")  # noqa: E731
TOY = DatasetSize("Toy", "video", items=F(10), frames=F(1000), width=F(100), height=F(50), audio_seconds=F(40),
                  input_size=F(10), seq_len=F(10), epochs=F(2), trials=F(5))


def _rows():
    rows = scaling.project(MEASURED, datasets=(TOY,), workers=(1, 8, 64), bandwidth_gbit=10.0)
    return {r["stage"].split(",")[0].split(" (")[0]: r for r in rows}


def test_per_item_stages_divide_the_work_and_add_one_startup():
    rows = _rows()
    # detect: 1000 frames x 10 ms = 10 s of work; start-up 5 s import + 2 s detector
    assert rows["decode + detect"]["wall_s"] == pytest.approx({1: 17.0, 8: 7 + 10 / 8, 64: 7 + 10 / 10})
    # audio: 10 clips of 4 s, 0.2 s each; 64 workers but only 10 videos to share
    audio = rows["audio LLDs + functionals"]
    assert audio["per_unit_s"] == pytest.approx(0.05)
    assert audio["wall_s"] == pytest.approx({1: 8.0, 8: 6 + 2 / 8, 64: 6 + 2 / 10})
    # features: 100 px x 1 us per image, 1000 faces
    assert rows["CNN features"]["wall_s"][8] == pytest.approx(8 + 0.1 / 8)


def test_training_adds_the_assumed_allreduce_per_step_and_tuning_runs_trials_in_rounds():
    rows = _rows()
    step_s, sequences, epochs = 0.1 * 10, 100, 2
    allreduce_8 = 2 * 7 / 8 * 4 * 1_000_000 / (10e9 / 8)
    assert rows["training"]["wall_s"] == pytest.approx({
        1: 9 + epochs * 50 * step_s,
        8: 9 + epochs * math.ceil(sequences / 16) * (step_s + allreduce_8),
        64: 9 + epochs * 1 * (step_s + 2 * 63 / 64 * 4e6 / 1.25e9)})
    trial_s = 4 + epochs * 50 * step_s
    assert rows["tuning"]["per_unit_s"] == pytest.approx(trial_s)
    assert rows["tuning"]["wall_s"] == pytest.approx({1: 5 + 5 * trial_s, 8: 5 + trial_s, 64: 5 + trial_s})
    assert scaling.tuning_wall(10.0, trials=20, workers=8) == 30.0  # ceil(20 / 8) = 3 rounds


def test_a_dataset_without_audio_has_no_audio_row_and_outside_sizes_are_marked():
    silent = DatasetSize(**{**TOY.__dict__, "audio_seconds": F(0), "width": F(1e4), "height": F(1e4)})
    rows = scaling.project(MEASURED, datasets=(silent,), workers=(1,))
    assert not any(r["stage"].startswith("audio") for r in rows)
    assert [r["extrapolated"] for r in rows if r["stage"] == "decode + detect"] == [True]


def test_growth_fit_recovers_a_known_exponent():
    sizes = [16, 32, 64]
    fit = scaling.fit_growth(sizes, [0.003 * s ** 1.5 for s in sizes])
    assert fit["exponent"] == pytest.approx(1.5) and fit["coefficient"] == pytest.approx(0.003)
    stage = {"fit": fit}
    assert scaling.predict(stage, 128) == pytest.approx(0.003 * 128 ** 1.5)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "8"])
def test_bad_worker_counts_are_refused(workers):
    with pytest.raises(ValueError, match="workers must be"):
        scaling.per_item_wall(10.0, 1.0, workers, 100)
    with pytest.raises(ValueError, match="workers must be"):
        scaling.project(MEASURED, datasets=(TOY,), workers=(1, workers))


@pytest.mark.parametrize("sizes, seconds", [([32], [1.0]), ([32, 32], [1.0, 2.0]), ([0, 32], [1.0, 2.0]),
                                            ([16, 32], [1.0, -2.0]), ([16, 32], [1.0])])
def test_growth_fit_refuses_what_cannot_be_fitted(sizes, seconds):
    with pytest.raises(ValueError):
        scaling.fit_growth(sizes, seconds)


@pytest.mark.parametrize("args, message", [(["--workers", "1,0"], "workers must be"),
                                           (["--model", "no_such_model"], "unknown model 'no_such_model'")])
def test_command_line_refuses_bad_input_before_measuring(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        scaling.main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_every_dataset_size_names_its_source():
    for d in scaling.DATASETS:
        for name, figure in d.__dict__.items():
            if isinstance(figure, Figure):
                assert figure.source.strip() and figure.value >= 0, (d.name, name)
        assert d.frames.value >= d.items.value > 0


@pytest.mark.slow
def test_quick_run_writes_its_figures_and_table(tmp_path):
    import json

    assert scaling.main(["--quick", "--out", str(tmp_path), "-q"]) == 0
    report = json.loads((tmp_path / "scaling.json").read_text())
    assert set(report["stages"]) == {"detect", "audio", "features", "train_step"}
    assert report["machine"]["cpu"] and report["machine"]["tensorflow"]
    assert len(report["projections"]) == 18  # 5 stages x 4 sets, less audio for BU-4DFE and EmotioNet
    assert "| EmotioNet | tuning, 20 trials |" in (tmp_path / "scaling.md").read_text()
    assert (tmp_path / "projections.csv").read_text().count("\n") == 19
