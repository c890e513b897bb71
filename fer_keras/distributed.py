"""Training across workers: ``training.strategy: multi_worker``.

``tf.distribute.MultiWorkerMirroredStrategy`` from the standard ``TF_CONFIG`` (what SLURM helpers
and Ray Train's TensorflowTrainer set). What cannot work is refused here, before the strategy is
created: its constructor already waits for every worker, so a refusal after it would leave the
others waiting. What Keras 3 gets wrong under this strategy is set right by :func:`keras_fixes`.

Only the chief (task ``chief``, or ``worker`` 0 without one) writes the run directory; every other
worker trains in a private copy of it (:func:`workspace`), taken once the chief has prepared it,
so a restarted cluster resumes every worker from the chief's BackupAndRestore state.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MULTI_WORKER = "multi_worker"
ALTERNATIVES = ("on one host with several GPUs use training.strategy: mirrored; to use many hosts, "
                "run a search with KerasTuner's parallel trials (fer-keras tune as chief and workers, "
                "each worker with strategy mirrored)")
WAIT = "FER_KERAS_WORKER_WAIT"  # seconds a worker waits for the others to start (default below)
DEFAULT_WAIT = 600
TRAINING_TASKS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """This process's place in the ``TF_CONFIG`` cluster."""
    task_type: str
    index: int
    workers: int  # the tasks that train: the chief and the workers
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0 and not self.has_chief)


def cluster(environ=os.environ) -> Cluster:
    """The cluster ``TF_CONFIG`` describes; a clear error when it is missing or malformed."""
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(f"training.strategy {MULTI_WORKER} reads the cluster from the TF_CONFIG environment "
                         f"variable, which is not set ({example}); {ALTERNATIVES}")
    try:
        config = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"TF_CONFIG is not JSON ({err}); {example}") from None
    spec = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(spec, dict) or not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG needs a 'cluster' and a 'task' object; {example}")
    others = sorted(set(spec) - set(TRAINING_TASKS))
    if others:
        raise ValueError(f"TF_CONFIG: cluster has {', '.join(others)} tasks; MultiWorkerMirroredStrategy "
                         "trains with 'chief' and 'worker' tasks only (no parameter servers, no evaluator)")
    for kind, addresses in spec.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses)):
            raise ValueError(f"TF_CONFIG: cluster.{kind} must be a list of 'host:port', got {addresses!r}")
    if len(spec.get("chief", [])) > 1:
        raise ValueError(f"TF_CONFIG: one chief at most, got {spec['chief']}")
    kind, index = task.get("type"), task.get("index")
    if kind not in spec or not isinstance(index, int) or not 0 <= index < len(spec[kind]):
        raise ValueError(f"TF_CONFIG: task {task!r} is not in the cluster {spec!r}")
    return Cluster(kind, index, sum(len(v) for v in spec.values()), has_chief="chief" in spec)


def check(training, batch_size: int, workers: int, gpus: bool) -> None:
    """Refuse, with the reason and the alternative, what cannot train across ``workers``."""
    if training.xla and not gpus:
        raise ValueError("training.xla with strategy multi_worker needs GPUs: TensorFlow has no collectives "
                         "in XLA on CPU ('Collectives are not yet implemented for CPU devices when compiling "
                         "with XLA'); set xla: false")
    if batch_size % workers:
        raise ValueError(f"data.pipeline.batch_size {batch_size} is the global batch, split evenly over the "
                         f"{workers} workers of TF_CONFIG; make it a multiple of {workers}")


def strategy(training, batch_size: int, environ=os.environ):
    """A ``MultiWorkerMirroredStrategy`` for this process's ``TF_CONFIG`` task, after :func:`check`.

    It must be the first TensorFlow work of the process (TensorFlow configures collectives at
    start-up). Its constructor waits for every worker; after ``FER_KERAS_WORKER_WAIT`` seconds
    (600 unless set) without them this process ends with a message instead of waiting on."""
    import tensorflow as tf

    place = cluster(environ)
    check(training, batch_size, place.workers, bool(tf.config.list_physical_devices("GPU")))
    wait = float(environ.get(WAIT, DEFAULT_WAIT))
    watchdog = threading.Timer(wait, _give_up, (place, wait))
    watchdog.daemon = True
    watchdog.start()
    try:
        made = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        if "program startup" not in str(err):
            raise
        raise RuntimeError("strategy multi_worker must be created before any other TensorFlow work in the "
                           "process; start the training in a fresh process (fer-keras train)") from None
    finally:
        watchdog.cancel()
    keras_fixes()
    return made


def _give_up(place: Cluster, wait: float):
    print(f"{place.task_type} {place.index}: the other workers of TF_CONFIG did not all start within "
          f"{wait:g} s ({WAIT}); start every worker with the same TF_CONFIG cluster", file=sys.stderr, flush=True)
    os._exit(3)


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy) -> bool:
    """Whether this process writes the run directory: always, unless it is a non-chief worker."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    return Cluster(resolver.task_type, resolver.task_id, 0,
                   has_chief="chief" in resolver.cluster_spec().as_dict()).is_chief


def training_input(strategy, exp, build, files: int):
    """The training input ``build(exp)`` gives, or, across the workers of a multi-worker run, each
    worker's: by file when every worker gets at least one of the split's ``files``: worker i of n
    reads every n-th file of each epoch's order (fer_keras.data.pipeline.record_stream) in
    per-replica batches, the same number of steps on every worker, so a worker decodes 1/n of the
    data; by data otherwise (``shard_by_data``). tf.data's own FILE policy cannot do it: the
    pipeline draws each epoch's file order inside a ``flat_map``, where the policy does not reach
    the reader and leaves every worker reading every file. ``build(exp, share, replicas)`` makes
    one worker's stream: ``replicas`` per-replica batches a step."""
    if not is_multi_worker(strategy):
        return build(exp)
    if files < cluster().workers:
        return shard_by_data(build(exp))
    pipeline = exp.data.pipeline

    def per_worker(context):
        batch = context.get_per_replica_batch_size(pipeline.batch_size)
        data = dataclasses.replace(exp.data, pipeline=dataclasses.replace(pipeline, batch_size=batch))
        share = (context.input_pipeline_id, context.num_input_pipelines)
        return build(dataclasses.replace(exp, data=data), share,
                     strategy.num_replicas_in_sync // context.num_input_pipelines)

    return strategy.distribute_datasets_from_function(per_worker)


def shard_by_data(ds):
    """``ds`` with each global batch split over the workers (batch / workers each): every worker
    reads the whole stream, so the global batches are those of one worker, in the same order (a
    split of fewer files than workers, and the validation split)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def agree(strategy, values, what: str) -> None:
    """Stop every worker with the same error when they hold different ``values`` (a collective:
    every worker calls it at the same point). The sums of the values and of their squares
    across the workers show a difference: n * sum(v^2) = sum(v)^2 only when all are equal."""
    if not is_multi_worker(strategy):
        return
    import numpy as np
    import tensorflow as tf

    local = tf.constant([[float(v) for v in values], [float(v) ** 2 for v in values]], tf.float64)
    sums = strategy.reduce("SUM", strategy.run(lambda: tf.identity(local)), axis=None).numpy()
    if not np.array_equal(sums[0] ** 2, strategy.num_replicas_in_sync * sums[1]):
        raise RuntimeError(f"the workers disagree on {what} (this worker: {list(values)}): the run directory "
                           "must be one folder that every worker reads (a shared file system), and every "
                           "worker must run the same experiment")


def barrier(strategy) -> None:
    """Wait until every worker reaches this point."""
    agree(strategy, [1], "the barrier")


@contextmanager
def workspace(strategy, run_dir):
    """``(root, private)``: where this worker writes: the run directory for the chief (or a single
    worker); for another worker a private temporary folder (removed at the end) that
    :func:`snapshot` fills with a copy of the chief's run directory."""
    if is_chief(strategy):
        yield Path(run_dir), False
        return
    private = Path(tempfile.mkdtemp(prefix="fer-keras-worker-"))
    try:
        yield private / "run", True
    finally:
        shutil.rmtree(private, ignore_errors=True)


def snapshot(run_dir, private: Path) -> Path:
    """A copy of the chief's run directory (as far as it exists) at ``private``."""
    if Path(run_dir).is_dir():
        shutil.copytree(run_dir, private)
    return private


_FIXED = False


def keras_fixes() -> None:
    """Two places where Keras 3's TensorFlow trainer fails under MultiWorkerMirroredStrategy
    (keras #20585, #20329), set right for that strategy only (other strategies run Keras's code):

    - ``fit`` builds the metrics from a first batch reduced across workers with ``MEAN``, which
      this strategy cannot do with a tuple or dict batch ("Attempt to convert a value (PerReplica
      ...)"); one replica's part of the batch has the same shapes, and needs no collective.
    - every step reduces its logs with ``strategy.reduce("MEAN", value, axis=0)``, which fails on
      the scalar logs ("Invalid reduction dimension 0 for input with 0 dimensions"); ``axis=None``
      is the mean across the replicas that Keras means."""
    global _FIXED
    if _FIXED:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    reduce_per_replica, symbolic_build = trainer.reduce_per_replica, trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_fixed(values, strategy, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    def build_fixed(self, iterator=None, data_batch=None):
        if iterator is None or not is_multi_worker(self.distribute_strategy):
            return symbolic_build(self, iterator, data_batch)
        for _, _, batches in iterator:
            data_batch = tree.map_structure(
                lambda v: self.distribute_strategy.experimental_local_results(v)[0], next(batches))
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_fixed
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_fixed
    _FIXED = True
