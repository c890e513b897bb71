"""Class orders and AU sets, kept as data in one place so no model or pipeline hard-codes them.

Thesis 000 never gives its full AFEW order (only that Angry sits at one-hot index 1), so the
toolkit uses the folder names of the AFEW 7.0 release in alphabetical order; a user who needs
another order passes it explicitly and it is recorded in every manifest. Thesis 002 fixes its
BU-4DFE order (alphabetical, one-hot, §3.2.4); FER2013's is the one its CSV's integer labels use.
Thesis 003 orders its categories Neutral, Happy, Sad, Angry, Fear, Surprise, Disgust in every table.
"""

AFEW = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
BU4DFE = ("angry", "disgust", "fear", "happy", "sad", "surprise")
FER2013 = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
# Thesis 003's per-frame categories on its Aff-Wild subset: the order of its results tables, read as
# the one-hot order (the thesis never prints the encoding itself).
AFFWILD_CATEGORIES = ("Neutral", "Happy", "Sad", "Angry", "Fear", "Surprise", "Disgust")

CLASS_ORDERS = {"afew": AFEW, "bu4dfe": BU4DFE, "fer2013": FER2013, "va": AFFWILD_CATEGORIES}

# OpenFace 2.x FeatureExtraction: intensity (AUxx_r, 0-5) and presence (AUxx_c, 0/1) columns, in the
# order it writes them (sorted names). AU28 has presence only.
OPENFACE_AU_INTENSITY = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
OPENFACE_AU_PRESENCE = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)


def class_order(dataset: str) -> tuple[str, ...]:
    """Return the class order of a dataset, with a clear error for an unknown name."""
    try:
        return CLASS_ORDERS[dataset]
    except KeyError:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(CLASS_ORDERS)}") from None
