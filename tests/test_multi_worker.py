"""Training across workers (training.strategy: multi_worker): TF_CONFIG, what is refused up front,
two CPU workers on 127.0.0.1 against one, only the chief writing the run directory, and a restart
resumed from BackupAndRestore."""
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from fer_keras import config as cfg
from fer_keras import distributed, training, tuning
from fer_keras.classes import AFEW

CLI = "import data_prep, sys; from fer_keras.cli import main; sys.exit(main(sys.argv[1:]))"
LLD = 4


def lld_dataset(root, videos=16, shards=1, seed=0):
    """A prepared dataset of LLD-only videos (8 frames: one sequence of 8 each; the class shifts
    every feature), ``videos`` in train over ``shards`` shard files and 4 in val."""
    import tensorflow as tf

    from fer_keras.data.schema import VideoRecord, serialize

    rng = np.random.default_rng(seed)
    splits, entries = {}, {}
    for split, count, files in (("train", videos, shards), ("val", 4, 1)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        rels = [f"{split}/{split}-{k:05d}.tfrecord" for k in range(files)]
        writers = [tf.io.TFRecordWriter(os.path.join(root, rel)) for rel in rels]
        for i in range(count):
            label, vid = i % 2, f"{split}{i:03d}"
            lld = (rng.normal(size=(8, LLD)) + label).astype(np.float32)
            writers[i % files].write(serialize(VideoRecord(
                video_id=vid, label=label, fps=25.0, face_size=8, frames=[b"x"] * 8, frame_index=np.arange(8),
                audio_lld=lld)))
            entries[f"{split}/{vid}"] = {"id": vid, "split": split, "label": label, "status": "ok",
                                         "frames_kept": 8, "shard": rels[i % files]}
        for writer in writers:
            writer.close()
        splits[split] = {"shards": rels, "videos": count}
    manifest = {"schema_version": 2, "dataset": "afew", "classes": list(AFEW), "options": {"face_size": 8},
                "audio": {"lld_dim": LLD, "functionals_dim": 0}, "splits": splits, "videos": entries}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return root


def experiment(root, strategy="default", batch_size=4, **training_opts):
    """A seconds-per-epoch GRU on the LLDs, without dropout (its draws differ per replica)."""
    return cfg.from_dict({
        "name": "lld_gru",
        "data": {"root": str(root), "pipeline": {"inputs": ["lld"], "seq_len": 8, "batch_size": batch_size}},
        "model": {"name": "audio_gru", "options": {"seq_len": 8, "input_dim": LLD, "units": 8, "rnn_layers": 1}},
        "training": {"epochs": 2, "optimizer": {"learning_rate": 1e-2}, "verbose": 0, "strategy": strategy,
                     "monitor": "val_loss", **training_opts},
    })


def tf_config(ports, index, kind="worker"):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": kind, "index": index}})


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(tmp_path, config, run_dir, n=2, env=None, timeout=240):
    """``fer-keras train`` as ``n`` workers of one TF_CONFIG cluster on 127.0.0.1, each in its own
    process group (a killpoint kills only it) with its own TMPDIR. Returns the return codes and
    logs; on the time limit every worker is killed and the test fails."""
    ports = free_ports(n)
    workers = []
    for i in range(n):
        tmp = tmp_path / f"tmp-{i}"
        tmp.mkdir(exist_ok=True)
        workers.append(subprocess.Popen(
            [sys.executable, "-c", CLI, "train", str(config), "--run-dir", str(run_dir), "--no-evaluate"],
            env={**os.environ, "TF_CONFIG": tf_config(ports, i), "TMPDIR": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "2",
                 **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True))
    logs = []
    try:
        for w in workers:
            logs.append(w.communicate(timeout=timeout)[0])
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait()
    return [w.returncode for w in workers], logs


def weights(run_dir):
    import keras

    return keras.saving.load_model(run_dir / "checkpoints" / "last.keras", compile=False).get_weights()


# --- TF_CONFIG and refusals (fast) --------------------------------------------------------------

def test_tf_config_names_the_chief():
    both = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]}}
    chief = distributed.cluster({"TF_CONFIG": json.dumps({**both, "task": {"type": "chief", "index": 0}})})
    worker0 = distributed.cluster({"TF_CONFIG": json.dumps({**both, "task": {"type": "worker", "index": 0}})})
    assert (chief.workers, chief.is_chief, worker0.is_chief) == (3, True, False)
    alone = distributed.cluster({"TF_CONFIG": tf_config([5], 0)})
    assert (alone.workers, alone.is_chief) == (1, True)
    assert not distributed.cluster({"TF_CONFIG": tf_config([5, 6], 1)}).is_chief


@pytest.mark.parametrize("value, message", [
    (None, "TF_CONFIG environment variable, which is not set.*strategy: mirrored.*parallel trials"),
    ("{cluster", "not JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', "needs a 'cluster' and a 'task'"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', "ps tasks"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "'host:port'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "not in the cluster"),
])
def test_a_missing_or_malformed_tf_config_is_a_clear_error(value, message):
    with pytest.raises(ValueError, match=message):
        distributed.cluster({} if value is None else {"TF_CONFIG": value})


def test_what_cannot_work_is_refused_with_the_alternative(tmp_path, monkeypatch):
    t = experiment(tmp_path, "multi_worker").training
    with pytest.raises(ValueError, match="multiple of 3"):
        distributed.check(t, 4, 3, gpus=False)
    distributed.check(t, 6, 3, gpus=False)
    xla = experiment(tmp_path, "multi_worker", xla=True).training
    with pytest.raises(ValueError, match="Collectives are not yet implemented for CPU"):
        distributed.check(xla, 4, 2, gpus=False)
    distributed.check(xla, 4, 2, gpus=True)
    with pytest.raises(ValueError, match="TF_CONFIG, not from a ':' suffix"):
        experiment(tmp_path, "multi_worker:2")
    # refused before the strategy (whose constructor waits for the other workers) and before any file
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], 0))
    with pytest.raises(ValueError, match="batch_size 4 .* 3 workers"):
        training.train(experiment(tmp_path / "data", "multi_worker"), tmp_path / "run")
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ValueError, match="TF_CONFIG environment variable"):
        training.train(experiment(tmp_path / "data", "multi_worker"), tmp_path / "run")
    with pytest.raises(ValueError, match="KerasTuner's chief and workers instead.*mirrored"):
        tuning.tune(experiment(tmp_path / "data", "multi_worker"), tmp_path / "search")
    assert not (tmp_path / "run").exists() and not (tmp_path / "search").exists()


def test_the_strategy_after_other_tensorflow_work_is_a_clear_error(tmp_path, monkeypatch):
    import tensorflow as tf

    tf.constant(1.0) + 1  # this process has run TensorFlow already
    monkeypatch.setenv("TF_CONFIG", tf_config(free_ports(1), 0))
    with pytest.raises(RuntimeError, match="before any other TensorFlow work.*fresh process"):
        distributed.strategy(experiment(tmp_path, "multi_worker").training, 4)


# --- two workers on 127.0.0.1 (slow) ------------------------------------------------------------

@pytest.fixture(scope="module")
def lld_data(tmp_path_factory):
    return lld_dataset(str(tmp_path_factory.mktemp("lld")))


@pytest.fixture(scope="module")
def one_worker(lld_data, tmp_path_factory):
    """The run of one process (default strategy) the two-worker runs must equal."""
    run = tmp_path_factory.mktemp("one") / "run"
    training.train(experiment(lld_data), run)
    return run


def _multi_worker_config(tmp_path, lld_data):
    path = tmp_path / "exp.yaml"
    cfg.save(experiment(lld_data, "multi_worker"), path)
    return path


def _assert_like_one_worker(run, one_worker):
    for a, b in zip(weights(run), weights(one_worker), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with open(run / "history.csv") as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1"]  # one writer


@pytest.mark.slow
def test_two_workers_train_as_one_and_only_the_chief_writes(lld_data, one_worker, tmp_path):
    run = tmp_path / "run"
    codes, logs = run_workers(tmp_path, _multi_worker_config(tmp_path, lld_data), run)
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    _assert_like_one_worker(run, one_worker)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in one_worker.iterdir())
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 2
    assert not any((tmp_path / "tmp-1").iterdir()), "the other worker left its private copy"


@pytest.mark.slow
def test_a_killed_cluster_resumes_from_the_chiefs_backup(lld_data, one_worker, tmp_path):
    """Both workers killed after epoch 1's backup (a preempted job), then restarted: they continue
    at epoch 2 from the chief's BackupAndRestore state and end where one worker ends."""
    run, config = tmp_path / "run", _multi_worker_config(tmp_path, lld_data)
    codes, _ = run_workers(tmp_path, config, run, env={"FER_KERAS_KILLPOINT": "epoch_checkpointed@2"})
    assert codes == [-signal.SIGKILL] * 2
    assert (run / "backup" / "stage-0" / "training_metadata.json").is_file()
    codes, logs = run_workers(tmp_path, config, run)
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    redone = "1 epoch(s) from epoch 1 on have no resume state; they are redone"  # its row, before its backup
    assert redone in logs[0] and redone not in logs[1]  # the chief drops it; the other worker copies the result
    _assert_like_one_worker(run, one_worker)


def _both_shares(original):
    """``training.training_data`` of one process whose every batch is worker 0's half then worker
    1's half of what a two-worker run reads by file (the reference for sharding by file)."""
    import tensorflow as tf
    from keras import tree

    def training_data(exp, epoch, epochs, steps, share=None):
        half = cfg.merge(cfg.to_dict(exp), {"data": {"pipeline": {"batch_size": exp.data.pipeline.batch_size // 2}}})
        parts = [original(cfg.from_dict(half), epoch, epochs, steps, share=(i, 2)) for i in range(2)]
        return tf.data.Dataset.zip(tuple(parts)).map(
            lambda a, b: tree.map_structure(lambda x, y: tf.concat([x, y], 0), a, b))
    return training_data


def test_each_worker_reads_its_own_files_in_full_batches_and_as_many_steps(tmp_path):
    """A share's stream (pipeline.record_stream): the two workers' videos of an epoch are disjoint,
    together every video, each from its own files; each gives exactly ``steps`` full batches."""
    from fer_keras.data import loader

    data = experiment(lld_dataset(str(tmp_path / "data"), videos=20, shards=4), batch_size=2).data
    assert loader.shard_files(data, "train") == 4
    seen = []
    for i in range(2):
        ds = loader.split(data, "train", training=True, with_meta=True, epoch=3, epochs=1, share=(i, 2), steps=7)
        batches = [meta["video_id"].numpy() for _, _, meta in ds]
        assert len(batches) == 7 and all(len(b) == 2 for b in batches)
        seen.append({v.decode() for b in batches for v in b})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == {f"train{i:03d}" for i in range(20)}
    shard_of = {i: i % 4 for i in range(20)}  # lld_dataset writes video i to shard i mod 4
    assert len({shard_of[int(v[5:])] for v in seen[0]}) == 2 == len({shard_of[int(v[5:])] for v in seen[1]})


@pytest.mark.slow
def test_two_workers_reading_their_own_files_train_as_one_process_on_both_shares(tmp_path, monkeypatch):
    """Four shard files for two workers: each worker reads two (by file, not every worker all of
    them); the run ends with the weights of one process whose every global batch is the two
    workers' halves together."""
    data = lld_dataset(str(tmp_path / "data"), videos=16, shards=4)
    run, config = tmp_path / "run", tmp_path / "exp.yaml"
    cfg.save(experiment(data, "multi_worker"), config)
    codes, logs = run_workers(tmp_path, config, run)
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    monkeypatch.setattr(training, "training_data", _both_shares(training.training_data))
    training.train(experiment(data), tmp_path / "one")
    _assert_like_one_worker(run, tmp_path / "one")


# --- KerasTuner's chief and workers ---------------------------------------------------------------

def test_a_search_worker_whose_chief_is_gone_ends_with_a_message(tmp_path):
    """KerasTuner's client waits an hour per call for a chief that is not there; a worker here
    stops after FER_KERAS_CHIEF_WAIT seconds with a message naming the address and what to do."""
    exp = cfg.merge(cfg.to_dict(experiment(lld_dataset(str(tmp_path / "data")), "mirrored")),
                    {"tuning": {"max_trials": 1, "epochs": 1, "fixed": {"units": 8, "rnn_layers": 1}}})
    path = tmp_path / "exp.yaml"
    cfg.save(cfg.from_dict(exp), path)
    port = free_ports(1)[0]  # nothing listens there
    worker = subprocess.run(
        [sys.executable, "-c", CLI, "tune", str(path), "--out", str(tmp_path / "search")],
        env={**os.environ, "KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "127.0.0.1",
             "KERASTUNER_ORACLE_PORT": str(port), "FER_KERAS_CHIEF_WAIT": "2"},
        capture_output=True, text=True, timeout=180)
    assert worker.returncode == 3, worker.stderr[-3000:]
    assert (f"error: worker tuner0: the chief's oracle at 127.0.0.1:{port} did not answer (DEADLINE_EXCEEDED, "
            "waited up to 2 s, FER_KERAS_CHIEF_WAIT)") in worker.stderr


def test_keras_tuner_hands_a_lost_trial_back_to_its_tuner_id_or_to_anyone_after_a_chief_restart(tmp_path):
    """What the README's recovery steps rest on (KerasTuner 1.4.8): a trial whose worker died stays
    RUNNING, held for that KERASTUNER_TUNER_ID (no other worker gets it, and the chief waits for it);
    the same id asking again gets it back; a chief reloaded from its directory queues it for anyone."""
    import keras_tuner as kt

    def oracle():
        hp = kt.HyperParameters()
        hp.Float("x", 0, 1)
        made = kt.oracles.RandomSearchOracle(objective="loss", max_trials=5, hyperparameters=hp, seed=1)
        made._set_project_dir(str(tmp_path), "search")
        return made

    chief = oracle()
    lost = chief.create_trial("tuner0")  # tuner0 is then killed mid-trial
    other = chief.create_trial("tuner1")
    assert other.trial_id != lost.trial_id and chief.trials[lost.trial_id].status == "RUNNING"
    assert chief.create_trial("tuner0").trial_id == lost.trial_id  # tuner0 restarted under its id
    restarted = oracle()
    restarted.reload()
    requeued = {restarted.create_trial(tuner).trial_id for tuner in ("tuner7", "tuner8")}
    assert requeued == {lost.trial_id, other.trial_id}


def test_the_chief_requeues_a_trial_whose_worker_went_silent(tmp_path):
    """FER_KERAS_TRIAL_TIMEOUT on the chief: tuner0's trial, with no word for longer, goes to the
    next worker that asks; tuner1, reporting its epochs, keeps its own."""
    import time

    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Float("x", 0, 1)
    oracle = kt.oracles.RandomSearchOracle(objective="loss", max_trials=5, hyperparameters=hp, seed=1)
    oracle._set_project_dir(str(tmp_path), "search")
    with tuning.requeue_lost_trials(oracle, timeout=0.4):
        lost = oracle.create_trial("tuner0").trial_id  # tuner0 is then killed
        kept = oracle.create_trial("tuner1").trial_id
        for _ in range(10):
            time.sleep(0.1)
            oracle.update_trial(kept, {"loss": 1.0})
        assert oracle.create_trial("tuner2").trial_id == lost
        assert oracle.create_trial("tuner1").trial_id == kept
    assert "create_trial" not in vars(oracle)  # the chief's oracle is itself again


@pytest.mark.slow
def test_a_one_worker_tf_config_trains_as_one_process(lld_data, one_worker, tmp_path):
    run = tmp_path / "run"
    codes, logs = run_workers(tmp_path, _multi_worker_config(tmp_path, lld_data), run, n=1)
    assert codes == [0], logs[0][-3000:]
    _assert_like_one_worker(run, one_worker)


def test_a_search_trains_its_trials_under_mirrored(tmp_path, monkeypatch):
    """What a search worker with several GPUs runs (one CPU replica here): KerasTuner builds and
    fits each trial's model under the MirroredStrategy the experiment names."""
    import tensorflow as tf

    made = []
    real = training.strategy_from
    monkeypatch.setattr(training, "strategy_from", lambda exp: made.append(real(exp)) or made[-1])
    exp = cfg.merge(cfg.to_dict(experiment(lld_dataset(str(tmp_path / "data")), "mirrored")),
                    {"tuning": {"max_trials": 1, "epochs": 1, "fixed": {"units": 8, "rnn_layers": 1}}})
    result = tuning.tune(cfg.from_dict(exp), tmp_path / "search")
    assert result["completed"] == 1
    assert [type(s) for s in made] == [tf.distribute.MirroredStrategy]
