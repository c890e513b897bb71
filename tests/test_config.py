"""Experiment YAML: every section validated, errors name the file and the key."""
import pytest
import yaml

from fer_keras import config


def write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_round_trip(tmp_path):
    exp = config.load(write(tmp_path, {"name": "x", "model": {"name": "audio_gru"}}))
    saved = tmp_path / "resolved.yaml"
    config.save(exp, saved)
    assert config.to_dict(config.load(saved)) == config.to_dict(exp)
    assert exp.training.plan()[0].epochs == exp.training.epochs


@pytest.mark.parametrize("raw, where", [
    ({"trainig": {}}, "top level: unknown key(s) trainig"),
    ({"training": {"optimizer": {"learnig_rate": 1}}}, "training.optimizer: unknown key(s) learnig_rate"),
    ({"data": {"pipeline": {"seq_lenn": 4}}}, "data.pipeline: unknown key(s) seq_lenn"),
    ({"training": {"stages": [{"epochs": 1}, {"epoch": 2}]}}, "training.stages[1]: unknown key(s) epoch"),
    ({"model": {"name": "vggface_bgru", "options": {"unitz": 3}}}, "unknown option(s) unitz"),
    ({"model": {"name": "no_such_model"}}, "unknown model 'no_such_model'"),
    ({"training": {"optimizer": {"name": "adagrad"}}}, "name must be one of adam, rmsprop, sgd"),
    ({"training": {"optimizer": {"name": "rmsprop", "options": {"rhoo": 0.9}}}}, "unknown rmsprop keyword(s) rhoo"),
    ({"training": {"epochs": 0}}, "epochs must be a positive number"),
    ({"training": {"schedule": {"name": "exponential"}}}, "exactly one of decay_steps, decay_epochs"),
    ({"training": {"stages": [{"epochs": 2, "trainable": -1}]}}, "trainable must be"),
    ({"training": {"schedule": {"name": "exponential", "decay_steps": 5},
                   "reduce_lr_on_plateau": {"patience": 2}}}, "reduce_lr_on_plateau needs schedule"),
    ({"data": {"pipeline": {"augment": {"flop": True}}}}, "flop"),
    ({"evaluation": {"aggregate": "median"}}, "aggregate must be one of mean, vote"),
    ({"data": "oops"}, "data: expected a mapping"),
])
def test_bad_config_names_file_and_key(tmp_path, raw, where):
    path = write(tmp_path, raw)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(config.ConfigError, match="bad.yaml: not valid YAML"):
        config.load(bad)


def test_thesis_optimiser_settings_and_overrides(tmp_path):
    path = write(tmp_path, {"training": {
        "optimizer": {"name": "rmsprop", "learning_rate": 0.01,
                      "options": {"rho": 0.9, "momentum": 0.9, "epsilon": 1.0}},
        "schedule": {"name": "exponential", "decay_epochs": 2, "decay_rate": 0.94},
        "early_stopping": None}})
    exp = config.load(path, overrides={"training": {"epochs": 3}, "data": {"root": "elsewhere"}})
    assert exp.training.optimizer.options == {"rho": 0.9, "momentum": 0.9, "epsilon": 1.0}
    assert exp.training.epochs == 3 and exp.data.root == "elsewhere"
    assert not exp.training.early_stopping.enabled
