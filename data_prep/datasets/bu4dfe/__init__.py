"""BU-4DFE 2D texture videos, thesis 002: its registry entry."""
from data_prep.dataset import Dataset, Synthetic
from data_prep.datasets.bu4dfe.options import Bu4dfeOptions
from data_prep.datasets.bu4dfe.synthetic import Bu4dfeSpec
from fer_keras.classes import BU4DFE

DATASET = Dataset(
    name="bu4dfe", package=__name__, classes=BU4DFE, labels=("category",), options=Bu4dfeOptions, subjects=True,
    summary="prepare BU-4DFE as thesis 002: Haar + MedianFlow faces, OpenFace AU trimming, folds",
    description="Prepare BU-4DFE (<subject>_<emotion>_tex.avi videos or <subject>/<Emotion>/ frame folders): "
                "neutral onset/offset frames cut by thesis 002's Algorithm 1 on OpenFace 2.x CSVs, the face "
                "found by a Haar cascade on the first frames and tracked (MedianFlow), 160x160 PNG crops, "
                "shards (train / test by the thesis's subjects; train_aug with --augment), manifest.json, "
                "failures.jsonl and splits.json (Fig. 3.6). With only OUT, a synthetic set is written to "
                "OUT/synthetic_source and prepared.",
    synthetic=Synthetic(
        f"{__name__}.synthetic", Bu4dfeSpec, "synthetic BU-4DFE: <subject>_<emotion>_tex.avi (or frame folders) "
        "+ OpenFace CSVs",
        "Write a synthetic BU-4DFE set: 640x480 25 fps videos of a real face whose expression rises from neutral "
        "to an apex and back, each with the CSV OpenFace 2.x FeatureExtraction writes; on purpose F016 lacks "
        "happiness, and there is an AU-peak anomaly, a tracker loss, a video without CSV and a corrupt file. "
        "Ground truth: synthetic_truth.json.",
        small=dict(subjects=("F001", "F011"), min_frames=40, max_frames=40, long_video=0)),
    small=dict(face_size=32),
)
