"""Valence/arousal video and image sets (theses 001 and 003): Aff-Wild2, Aff-Wild, joystick logs,
thesis 001's frame folders, AffectNet: its registry entry."""
from data_prep.dataset import Dataset, Synthetic
from data_prep.datasets.va.options import VaOptions
from data_prep.datasets.va.synthetic import SyntheticSpec
from fer_keras.classes import AFFWILD_CATEGORIES

DATASET = Dataset(
    name="va", package=__name__, classes=AFFWILD_CATEGORIES, labels=("va", "category"), options=VaOptions,
    summary="prepare a valence/arousal set (Aff-Wild2, Aff-Wild, joystick logs, frame folders, AffectNet)",
    description="Prepare per-frame valence/arousal (and categories, where given) from one of five layouts "
                "(--layout): every face found by MTCNN, each annotated person followed as its own track "
                "(Aff-Wild2's _left/_right files), crops turned level and cut at 112 then 96 px (thesis 001; "
                "--crop box --face-size 72 for thesis 003), unannotated frames dropped and counted, long "
                "tracks written as segment records, manifest.json and failures.jsonl. With only OUT, a "
                "synthetic set in the --layout is written to OUT/synthetic_source and prepared.",
    synthetic=Synthetic(f"{__name__}.synthetic", SyntheticSpec,
                        "synthetic valence/arousal sets in each layout (--layout)",
                        "Write a synthetic valence/arousal set in one of the layouts: faces whose expression "
                        "follows a smooth valence/arousal path, videos with two people, a variable frame rate, "
                        "optionally one long 1280x720 video, one malformed annotation file and one video "
                        "without annotations. Ground truth: synthetic_truth.json.",
                        small=dict(videos=2, two_person=1, min_frames=16, max_frames=20, images=6, long_frames=0)),
    small=dict(face_size=32, crop_size=40, segment_frames=8, min_face_size=0.2),
)
