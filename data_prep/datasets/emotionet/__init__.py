"""EmotioNet's manually annotated images (thesis 004): a URL sheet to download, then AU or
valence/arousal records: its registry entry."""
from data_prep.dataset import Dataset, Synthetic
from data_prep.datasets.emotionet.options import EmotionetOptions
from data_prep.datasets.emotionet.synthetic import EmotionetSpec

DATASET = Dataset(
    name="emotionet", package=__name__, classes=(), labels=("au", "va"), options=EmotionetOptions,
    summary="prepare an EmotioNet download as AU (60, 11 or masked) or valence/arousal records (thesis 004)",
    description="Turn a folder written by `fer-keras download emotionet SHEET DIR` into single-frame records: "
                "--labels 60 (999 -> 0), 11 (AUs 1 2 4 5 6 9 12 17 20 25 26; images with a 999 among them "
                "dropped) or masked (999 kept for the masked loss), or with --va-csv the valence/arousal "
                "subset; a seeded split in the thesis's proportions; the central square (or --faces: MTCNN's "
                "face) at --image-size. With only OUT, a synthetic EmotioNet is written, downloaded from its "
                "local server on 127.0.0.1 and prepared.",
    synthetic=Synthetic(f"{__name__}.synthetic", EmotionetSpec,
                        "synthetic EmotioNet: the URL sheet (.xlsx, .csv) and the local web it points at",
                        "Write emotionet.xlsx / emotionet.csv (URL, AUs 1-60 as 1/0/999, malformed rows, a "
                        "duplicate, unquoted URLs with commas), va.csv, and server/ (images whose drawn marks "
                        "follow their AUs as JPEG, grey JPEG, PNG with alpha and GIF, plus 404/403/410/500/503, "
                        "redirects, a stall, a truncated body, HTML, a huge body, a reset, hostile names) that "
                        "data_prep.datasets.emotionet.server serves on 127.0.0.1. Ground truth: "
                        "synthetic_truth.json.",
                        small=dict(images=8, va_images=6, min_side=96)),
    download=f"{__name__}.fetch",
    small=dict(image_size=32, train_fraction=0.5),
)
