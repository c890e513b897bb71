"""Thesis 002's cached features (§2.6): a frozen FER2013-fine-tuned CNN run over prepared videos.

The cascades (LSTM, BiLSTM, 1D-CNN) never train the CNN: they read its per-frame features from
HDF5 files (fer_keras.data.features). ``fer-keras features SOURCE --data PREPARED --out DIR``
writes, for each fold k of the dataset's split file, ``fold-<k>-features-<F>.h5`` with that
fold's videos (and, with ``augmentations``, their offline copies from split train_aug, on which
the thesis trains), ``test-features-<F>.h5`` with the test subjects' videos, and
``unassigned-features-<F>.h5`` when the split file leaves training subjects outside every fold.

SOURCE is a run directory of a FER2013 image model (its ``checkpoints/best.keras``) or an
experiment YAML whose model section names an image model and its weights. The tap is a layer
with one vector per image: the thesis's Flatten after the last pooling (``features``: 25,088 at
224 px for VGG) or its first dense layer (``dense``: 1,024). Videos come through the shard
pipeline (T frames, the end of a longer video cut, zero padding and mask), resized to the CNN's
input and normalised as its experiment says; only real frames go through the CNN, a video at a
time in fixed chunks of frames (so a video's features never depend on its batch: a resumed run
writes what an uninterrupted one does), and padded frames get zero features.

Every file is written batch by batch (memory holds one batch of videos, never a file) and
resumes after its last complete video (FeatureWriter); a finished file written with the same
settings and videos is skipped, one with other settings refused.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_keras import storage

logger = logging.getLogger(__name__)

DEFAULT_TAP = "features"
FRAMES_PER_CALL = 32  # frames per CNN call: bounds its activations (VGG16 at 224 px: ~0.4 GB per layer)
SETTINGS = "extraction"  # attribute of every file: the settings it was written with (JSON)


@dataclass
class Extractor:
    """A frozen image model cut at its tap, and how its images must be prepared."""
    model: object      # keras.Model: image (B, S, S, 3) -> tap (B, F)
    image_size: int
    normalize: str
    settings: dict     # what made the features, recorded in every file

    @property
    def dim(self) -> int:
        return int(self.model.output.shape[-1])


def taps(model) -> list[str]:
    """Layers of ``model`` with one vector per image (B, F): the ones a feature file can hold.

    Dropout layers are left out: at inference they equal the layer before."""
    import keras

    return [layer.name for layer in model.layers
            if len(layer.output.shape) == 2 and not isinstance(layer, (keras.layers.Dropout, keras.layers.InputLayer))]


def tap_model(model, tap, source=""):
    """``model`` cut at layer ``tap``: image -> its output. Refuses a model that does not take
    one image, or a tap that is not one of :func:`taps`."""
    import keras

    inputs = model.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != inputs[0].shape[2]:
        raise ValueError(f"{source}: model {model.name!r} does not take one square image "
                         f"(its inputs: {', '.join(str(tuple(i.shape)) for i in inputs)}); features come "
                         "from an image model such as vggface_finetune")
    candidates = taps(model)
    if tap not in candidates:
        raise ValueError(f"{source}: model {model.name!r} has no feature tap {tap!r}; its taps: "
                         f"{', '.join(candidates)}")
    return keras.Model(inputs[0], model.get_layer(tap).output, name=f"{model.name}_{tap}")


def load_extractor(source, tap=DEFAULT_TAP) -> Extractor:
    """The tap sub-model of a run directory's best checkpoint, or of an experiment's model (a YAML
    file, or a loaded ``config.Experiment``, as ``make reproduce`` resolves a plan's)."""
    from fer_keras import config as cfg
    from fer_keras.data.integrity import sha256
    import fer_keras.models  # noqa: F401  registers the custom layers a checkpoint may hold
    from fer_keras.rundir import RunDir, load_checkpoint

    if isinstance(source, cfg.Experiment):
        exp, source, label = source, Path(f"{source.name}.yaml"), source.name
    else:
        source = Path(source)
        exp = cfg.load(source) if source.is_file() else None
        label = str(source.resolve())
    if exp is None and source.is_dir():
        run = RunDir(source)
        for path in (run.config, run.best):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; is {source} a run directory written by fer-keras train?")
        exp = cfg.load(run.config)
        model = load_checkpoint(run.best)
        settings = {"source": str(run.best.resolve()), "sha256": sha256(run.best)}
    elif exp is not None:
        import keras

        from fer_keras.models import cached

        weights = exp.model.options.get("weights")
        if weights is None:  # seeded, so that a resumed extraction continues with the same CNN
            logger.warning("%s: the model has no weights file: its features come from random weights", source)
            keras.utils.set_random_seed(exp.training.seed)
        model = cached.build(exp, cached=False)
        settings = {"source": label, "model": exp.model.name, "options": exp.model.options,
                    "sha256": sha256(weights) if weights else None}
    else:
        raise FileNotFoundError(f"{source}: no such run directory or experiment file")
    from fer_keras.models.cached import CNN_LAYER, frame_cnn

    cnn = frame_cnn(model)
    if cnn is not None:  # a frozen-CNN sequence model (thesis 003): its per-frame CNN is the tap
        if tap not in (DEFAULT_TAP, CNN_LAYER):
            raise ValueError(f"{source}: a sequence model's features are its per-frame CNN's ({CNN_LAYER}), "
                             f"not {tap!r}")
        cut, tap = cnn, CNN_LAYER
    else:
        cut = tap_model(model, tap, source)
    size = int(cut.input.shape[1])
    normalize = exp.data.pipeline.normalize
    return Extractor(cut, size, normalize, {**settings, "tap": tap, "image_size": size, "normalize": normalize})


def file_plan(manifest, splits, augmentations=()) -> list[tuple[str, list[str]]]:
    """``(file stem, manifest keys)`` of every file: ``fold-<k>`` per fold (its videos, plus their
    copies by ``augmentations``), ``test``, and ``unassigned`` when some training videos are in
    no fold."""
    from fer_keras.data.splits import AUGMENTED_SPLIT, fold_keys

    videos = manifest["videos"]

    def usable(keys):
        return [k for k in keys if videos[k].get("frames_kept", 0) > 0]

    def copies(keys):
        wanted = set(keys)
        return [k for k, v in videos.items() if v["split"] == AUGMENTED_SPLIT and v.get("status") == "ok"
                and v.get("of") in wanted and (augmentations == "all" or v.get("augmentation") in augmentations)]

    plan = []
    for k in range(len(splits["folds"])):
        own = fold_keys(manifest, splits, k, "val")
        plan.append((f"fold-{k}", usable(own + copies(own))))
    test = [k for k, v in videos.items() if v["split"] == "test" and v.get("status") == "ok"]
    plan.append(("test", usable(test)))
    in_folds = {s for fold in splits["folds"] for s in fold} | set(splits.get("test", []))
    rest = [k for k, v in videos.items() if v["split"] == "train" and v.get("status") == "ok"
            and v.get("subject") is not None and v["subject"] not in in_folds]
    if rest:
        plan.append(("unassigned", usable(rest + copies(rest))))
    return plan


def split_plan(manifest) -> list[tuple[str, list[str]]]:
    """``(file stem, manifest keys)`` per split of a dataset without a split file (thesis 003's
    valence/arousal tracks): each split's usable videos, in manifest order."""
    splits = {}
    for key, v in manifest["videos"].items():
        if v.get("status") == "ok" and v.get("frames_kept", 0) > 0:
            splits.setdefault(v["split"], []).append(key)
    return list(splits.items())


def windowed(manifest) -> bool:
    """Whether the dataset's videos are stored whole as rows of T frames with their per-frame labels
    (valence/arousal or per-frame categories: every frame is a training frame), rather than one row
    of their first T frames (thesis 002's T = 100 per video)."""
    from fer_keras.data.schema import frame_labels, record_fields

    return frame_labels(manifest)[0] or record_fields(manifest)["category"]


def check_augmentations(manifest, augmentations, data=""):
    """Refuse methods the dataset ``data`` has no offline copies of, naming the ones it has."""
    from fer_keras.data.splits import AUGMENTED_SPLIT

    if not augmentations:
        return
    made = sorted({v.get("augmentation") for v in manifest["videos"].values()
                   if v["split"] == AUGMENTED_SPLIT and v.get("status") == "ok"})
    if not made:
        raise ValueError(f"{data}: no offline augmented copies (split train_aug); prepare the dataset "
                         "with --augment, or leave out --augmentations")
    unknown = [] if augmentations == "all" else sorted(set(augmentations) - set(made))
    if unknown:
        raise ValueError(f"{data}: no offline copies made by {', '.join(unknown)}; it has {', '.join(made)}")


def extract(extractor: Extractor, data, out, *, dtype="float32", augmentations=(), batch=4, seq_len=100,
            folds="splits.json", progress=True) -> list[dict]:
    """Write every file of :func:`file_plan` for the prepared dataset ``data`` into ``out``, in one
    pass over its shards; returns per file its path, videos and whether this call wrote it."""
    from fer_keras.data import manifest as manifest_file, splits as split_files

    storage.local_only(out, "a feature folder (HDF5 files written through h5py)")
    manifest = manifest_file.read(data)
    check_augmentations(manifest, augmentations, data)
    if storage.isfile(storage.join(data, folds)):
        plan = file_plan(manifest, split_files.read(storage.join(data, folds)), augmentations)
    elif windowed(manifest):
        plan = split_plan(manifest)
    else:  # whole videos (thesis 002) are written per fold of their split file
        raise FileNotFoundError(f"{Path(data) / folds}: missing; --data must be a prepared dataset with its split "
                                "file (fer-keras folds), or of tracks with per-frame labels")
    # the videos (augmentations included) are checked by name, so the settings leave them out
    settings = json.dumps({**extractor.settings, "dtype": dtype, "steps": seq_len}, sort_keys=True)
    files, done = [], []
    for stem, keys in plan:
        path = Path(out) / f"{stem}-features-{extractor.dim}.h5"
        ids = [manifest["videos"][k]["id"] for k in keys]
        if not ids:
            logger.warning("%s: no prepared video belongs in it; not written", path)
            continue
        fresh = not _complete(path, ids, settings)
        done.append({"path": str(path), "videos": len(ids), "written": fresh})
        if fresh:
            files.append((path, keys))
    if files:
        _write(extractor, manifest, data, files, {SETTINGS: settings}, dtype, batch, seq_len, progress)
    return done


def _write(extractor, manifest, data, files, attrs, dtype, batch, seq_len, progress):
    """Write (or continue) ``files`` = [(path, manifest keys)]: their videos not written yet come
    through one shard pipeline, and each batch goes to the files its videos belong in."""
    import tensorflow as tf
    from tqdm import tqdm

    from fer_keras.data import integrity
    from fer_keras.data.features import FeatureWriter
    from fer_keras.data.pipeline import PipelineConfig, sequences
    from fer_keras.data.schema import frame_labels

    videos = manifest["videos"]
    windows = windowed(manifest)
    writers, owner = [], {}
    try:
        for path, keys in files:
            writer = FeatureWriter(path, seq_len, extractor.dim, manifest["classes"], dtype, attrs,
                                   frame_labels=windows)
            writers.append((writer, len(keys)))
            ids, written = {videos[k]["id"] for k in keys}, set(writer.names())
            if written - ids:
                raise ValueError(f"{writer.partial}: holds videos the dataset no longer lists for it (e.g. "
                                 f"{sorted(written - ids)[0]}); delete it to write it again")
            owner.update({v: writer for v in ids - written})
        shard_splits = sorted({videos[k]["split"] for _, keys in files for k in keys})
        integrity.require(data, manifest, shard_splits)  # a missing or truncated shard: one line, first
        targets = ("category", "va") if windows and frame_labels(manifest)[0] else ("category",)
        cfg = PipelineConfig(seq_len=seq_len, padding="zeros", truncate=None if windows else "end",
                             inputs=("frames",), targets=targets, image_size=extractor.image_size,
                             normalize=extractor.normalize, batch_size=batch)
        size = extractor.image_size
        cnn = tf.function(lambda x: extractor.model(x, training=False),
                          input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
        total = sum(n for _, n in writers)
        bar = tqdm(total=total, initial=total - len(owner), desc="videos", unit="video", disable=not progress)
        if owner:
            batches = sequences(manifest, data, shard_splits, cfg, with_meta=True, ids=sorted(owner),
                                per_frame_category=windows)
            if windows:
                batches = _tracks(batches)
            for x, y, meta in batches.as_numpy_iterator() if not windows else batches:
                features = _features(cnn, x["frames"], x["mask"], extractor.dim)
                names = [v.decode() for v in meta["video_id"]]
                for writer, _ in writers:
                    rows = [i for i, v in enumerate(names) if owner[v] is writer]
                    if rows:
                        labels = y["category"][rows] if not windows else np.zeros((len(rows), len(writer.classes)))
                        writer.append(features[rows], x["mask"][rows], labels, [names[i] for i in rows],
                                      _frame_labels(y, meta, x["mask"], rows) if windows else None)
                bar.update(len(set(names)))
        bar.close()
        for writer, n in writers:
            done = len(set(writer.names())) if windows else writer.count
            if done != n:
                raise ValueError(f"{data}: {n - done} of the {n} videos of {os.path.basename(writer.path)} "
                                 f"have no record in the shards (fer-keras verify {data})")
            writer.finish()
    finally:
        for writer, _ in writers:
            writer.close()


def _tracks(batches):
    """The windows of a windowed extraction regrouped into one batch per video (all its segment
    records' windows): a file then only ever holds whole videos, so a resumed run, which skips
    the videos a file names, never leaves a video half written."""
    pending, current = [], None
    for x, y, meta in batches.as_numpy_iterator():
        for i, v in enumerate(meta["video_id"]):
            if v != current and pending:
                yield _stack(pending)
                pending = []
            current = v
            pending.append(({k: a[i] for k, a in x.items()}, {k: a[i] for k, a in y.items()},
                            {k: a[i] for k, a in meta.items()}))
    if pending:
        yield _stack(pending)


def _stack(items):

    return tuple({k: np.stack([part[k] for part in parts]) for k in parts[0]} for parts in zip(*items))


def _frame_labels(y, meta, masks, rows) -> dict:
    """The FRAME_DATASETS columns of ``rows`` of a batch: per step valence/arousal, class (-1 on
    unlabelled and padded steps) and source frame index, and the window's number in its track."""

    onehot = y["category"][rows]
    category = np.where((onehot.sum(-1) > 0) & (masks[rows] > 0), onehot.argmax(-1), -1)
    va = y["va"][rows] if "va" in y else np.zeros((*masks[rows].shape, 2), np.float32)
    return {"va": va, "categories": category, "frame_index": meta["frame_index"][rows],
            "sequence": meta["sequence"][rows]}


def _features(cnn, frames, masks, dim):
    """(B, T, F) features of a batch: each video's real frames through the CNN in chunks of
    FRAMES_PER_CALL counted from its first frame; padded frames stay zero."""

    out = np.zeros((*masks.shape, dim), np.float32)
    for b, mask in enumerate(masks):
        real = np.flatnonzero(mask)
        for first in range(0, len(real), FRAMES_PER_CALL):
            steps = real[first:first + FRAMES_PER_CALL]
            out[b, steps] = cnn(frames[b, steps]).numpy()
    return out


def _complete(path: Path, ids, settings: str) -> bool:
    """Whether ``path`` is a finished file of these settings and videos (recorded in features.json
    if a kill came between its rename and its record); refuses one of other settings or videos,
    and removes one whose size is not the recorded one (damaged: it is written again)."""
    import h5py

    from fer_keras.data import integrity
    from fer_keras.data.features import read_info

    if not path.is_file():
        return False
    index = integrity.feature_index(path.parent)
    problem = integrity.quick_problem(path.parent, path.name, index[path.name]) if path.name in index else None
    if problem is not None:
        logger.warning("%s: %s; writing it again", path, problem.what)
        path.unlink()
        return False
    read_info(path)
    with h5py.File(path, "r") as f:
        found = f.attrs.get(SETTINGS)
        names = set(f["names"].asstr()[()])
    if found != settings:
        differ = sorted(k for k, v in json.loads(settings).items() if json.loads(found or "{}").get(k) != v)
        raise ValueError(f"{path}: written with other settings ({', '.join(differ)}); delete it, or write to "
                         "another folder")
    if names != set(ids):
        raise ValueError(f"{path}: holds other videos than the dataset lists for it now; delete it to write it again")
    if path.name not in index:
        integrity.record_feature_file(path, len(names))
    return True


# --- fer-keras features ------------------------------------------------------------------------

def add_parser(subparsers):
    """The ``features`` subcommand's parser; the caller sets its ``func``."""
    p = subparsers.add_parser(
        "features", help="cache a frozen CNN's per-frame features (HDF5): thesis 002's cascades, thesis 003's frozen CNNs",
        usage="fer-keras features (RUN_DIR | CONFIG.yaml) --data PREPARED --out DIR [options]",
        description="Run a frozen CNN over the videos of a prepared dataset, batch by batch, and store its "
                    "per-frame features. Thesis 002: a FER2013 image model (a run directory's "
                    "checkpoints/best.keras, or an experiment YAML's model and weights) cut at a tap layer, over "
                    "BU-4DFE's videos (their first T frames, zero padded, masked), one fold-<k>-features-<F>.h5 per "
                    "fold of its split file and test-features-<F>.h5. Thesis 003: a frozen-CNN sequence model's "
                    "experiment YAML (its per-frame CNN and weights), over valence/arousal tracks without a split "
                    "file: every frame, as rows of T frames with their per-frame valence/arousal and category, one "
                    "<split>-features-<F>.h5 per split. A killed run continues after the last complete video; "
                    "finished files are skipped.")
    p.add_argument("source", metavar="RUN_DIR|CONFIG.yaml", help="FER2013 run directory or experiment YAML")
    p.add_argument("--data", required=True, metavar="PREPARED", help="prepared dataset (manifest.json, splits.json)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the feature files")
    p.add_argument("--tap", default=DEFAULT_TAP,
                   help="layer whose output is stored (default 'features', the Flatten: 25,088 for VGG at 224 px; "
                        "'dense' is the thesis's 1,024 tap)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="stored precision (float16 halves the files; read back as float32)")
    p.add_argument("--augmentations", metavar="all|M,M,...",
                   help="also store the fold videos' offline copies by these methods (split train_aug)")
    p.add_argument("--folds", default="splits.json",
                   help="split file, relative to PREPARED (default splits.json; without it, one file per split)")
    p.add_argument("--batch", type=int, default=4, help="videos per batch, the unit of reading and writing (default 4)")
    p.add_argument("--seq-len", type=int, default=100,
                   help="frames per row, T (default 100, thesis 002's; thesis 003: 240, which windows of 60 and 80 "
                        "divide, so both of its sequence lengths read the files)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    """``fer-keras features``: cheap checks of every input first, then the model, then the files."""
    if not (os.path.isdir(args.source) or os.path.isfile(args.source)):
        raise FileNotFoundError(f"{args.source}: no such run directory or experiment file")
    if not os.path.isfile(os.path.join(args.data, "manifest.json")):
        raise FileNotFoundError(f"{os.path.join(args.data, 'manifest.json')}: missing; --data must be a prepared "
                                "dataset")
    if args.batch < 1 or args.seq_len < 1:
        raise ValueError("--batch and --seq-len must be at least 1")
    augmentations = "all" if args.augmentations == "all" else tuple(
        m.strip() for m in (args.augmentations or "").split(",") if m.strip())
    extractor = load_extractor(args.source, args.tap)
    start = time.perf_counter()
    done = extract(extractor, args.data, args.out, dtype=args.dtype, augmentations=augmentations,
                   batch=args.batch, seq_len=args.seq_len, folds=args.folds, progress=not args.quiet)
    for d in done:
        size = os.path.getsize(d["path"]) / 1e9
        print(f"{d['path']}: {d['videos']} videos, {size:.2f} GB{'' if d['written'] else ' (complete already)'}")
    took = time.perf_counter() - start
    print(f"{len(done)} feature files ({extractor.dim} features per frame, {args.dtype}) in {args.out}, "
          f"{sum(d['written'] for d in done)} written in {took:.0f} s")
    return 0
