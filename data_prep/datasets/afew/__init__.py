"""AFEW 7.0 (EmotiW audio-video sub-challenge), thesis 000: its registry entry."""
from data_prep.datasets.afew.synthetic import SyntheticSpec
from data_prep.dataset import Dataset, Synthetic
from data_prep.video_options import PrepareOptions
from fer_keras.classes import AFEW

DATASET = Dataset(
    name="afew", package=__name__, classes=AFEW, labels=("category",), options=PrepareOptions,
    summary="prepare an AFEW 7.0 layout",
    description="Prepare AFEW: MTCNN faces aligned to a 5-point template, 40 ms audio clips with openSMILE LLDs, "
                "whole-clip functionals, TFRecord shards, manifest.json, failures.jsonl. With only OUT, a "
                "synthetic AFEW dataset is written to OUT/synthetic_source and prepared.",
    synthetic=Synthetic(f"{__name__}.synthetic", SyntheticSpec,
                        "synthetic AFEW 7.0 layout (Train_AFEW, Val_AFEW, Test_AFEW)",
                        small=dict(train_per_class=1, val_per_class=0, test_clips=1, min_frames=8, max_frames=10)),
    small=dict(face_size=32, functionals_set="none"),
)
