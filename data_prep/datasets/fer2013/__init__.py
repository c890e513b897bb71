"""FER2013 (Kaggle's fer2013.csv), thesis 002's spatial fine-tuning: its registry entry."""
from data_prep.dataset import Dataset, Synthetic
from data_prep.datasets.fer2013.options import Fer2013Options
from data_prep.datasets.fer2013.synthetic import Fer2013Spec
from fer_keras.classes import FER2013

DATASET = Dataset(
    name="fer2013", package=__name__, classes=FER2013, labels=("category",), options=Fer2013Options, source="file",
    synthetic_source="synthetic_fer2013.csv",
    summary="prepare fer2013.csv as single-frame records (thesis 002 fine-tuning)",
    description="Turn fer2013.csv (emotion,pixels,Usage) into single-frame records: Training -> train, PublicTest "
                "-> val, PrivateTest -> test; 48x48 grey becomes RGB at --image-size (224 and the grey-to-RGB "
                "replication are inferred for thesis 002, not stated). Malformed rows are logged "
                "with their line number in failures.jsonl. With only OUT, a synthetic CSV is written and prepared.",
    synthetic=Synthetic(f"{__name__}.synthetic", Fer2013Spec, "synthetic fer2013.csv (emotion,pixels,Usage; 48x48 grey)",
                        target="file", small=dict(per_class=(2, 1, 1))),
    small=dict(image_size=32),
)
