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

CLASS_ORDERS = {"afew": AFEW, "bu4dfe": BU4DFE, "emotionet": (), "fer2013": FER2013, "va": AFFWILD_CATEGORIES}

# OpenFace 2.x FeatureExtraction: intensity (AUxx_r, 0-5) and presence (AUxx_c, 0/1) columns, in the
# order it writes them (sorted names). AU28 has presence only.
OPENFACE_AU_INTENSITY = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
OPENFACE_AU_PRESENCE = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)

# EmotioNet's manually annotated sheet (thesis 004 §3.1): 60 AU columns, AUs 1 to 60 in ascending order,
# each 1 (active), 0 (inactive) or 999 (occluded or not annotated: losses.AU_UNKNOWN). Only 11 of them are
# really annotated (§4.2.2), the DISFA set without AU 15; §4.3 keeps those ("EmotioNet-11AU").
EMOTIONET_AUS = tuple(range(1, 61))
EMOTIONET_11_AUS = (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26)
# FACS names of the AUs thesis 004 lists (its Figure 1); AU 9 is the Nose Wrinkler, which §4.3 misnames
# "Lid Tightener" (AU 7).
AU_NAMES = {1: "Inner Brow Raiser", 2: "Outer Brow Raiser", 4: "Brow Lowerer", 5: "Upper Lid Raiser",
            6: "Cheek Raiser", 7: "Lid Tightener", 9: "Nose Wrinkler", 10: "Upper Lip Raiser",
            11: "Nasolabial Deepener", 12: "Lip Corner Puller", 13: "Cheek Puffer", 14: "Dimpler",
            15: "Lip Corner Depressor", 16: "Lower Lip Depressor", 17: "Chin Raiser", 18: "Lip Pucker",
            20: "Lip Stretcher", 22: "Lip Funneler", 23: "Lip Tightener", 24: "Lip Pressor", 25: "Lips Part",
            26: "Jaw Drop", 27: "Mouth Stretch", 28: "Lip Suck", 41: "Lid Droop", 42: "Slit", 43: "Eyes Closed",
            44: "Squint", 45: "Blink", 46: "Wink"}


def class_order(dataset: str) -> tuple[str, ...]:
    """Return the class order of a dataset, with a clear error for an unknown name."""
    try:
        return CLASS_ORDERS[dataset]
    except KeyError:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(CLASS_ORDERS)}") from None
