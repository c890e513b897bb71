"""Valence/arousal and expression annotation readers (data_prep/datasets/va/annotations.py): sample
files in each tool's own format, nearest-timestamp mapping against brute force, and every malformed
case reported with its file and 1-based line."""
import codecs
import math
import os

import numpy as np
import pytest

from data_prep.datasets.va import annotations as va
from data_prep.errors import BadInput
from fer_keras.classes import AFFWILD_CATEGORIES

AFFWILD2_EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                    "expression,valence,arousal")
LANDMARKS = ";".join(f"{v:.2f}" for v in np.linspace(10, 200, 136))


def write(path, text: str, bom: bool = False, crlf: bool = False, encoding: str = "utf-8") -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = (text.replace("\n", "\r\n") if crlf else text).encode(encoding)
    with open(path, "wb") as f:
        f.write((codecs.BOM_UTF8 if bom and encoding == "utf-8" else b"") + data)
    return str(path)


def nan_equal(a, b) -> bool:
    return np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32), equal_nan=True)


# --- Aff-Wild2 VA ---------------------------------------------------------------------------------

def test_affwild2_va_with_bom_crlf_and_sentinels(tmp_path):
    path = write(tmp_path / "VA" / "video1.txt",
                 "valence,arousal\n0.1,0.2\n-5,-5\n-0.35,0.9\n-5,0.3\n1,-1\n", bom=True, crlf=True)
    got = va.read_affwild2_va(path, frames=5)
    assert got.valence.dtype == np.float32 and got.arousal.dtype == np.float32
    assert nan_equal(got.valence, [0.1, np.nan, -0.35, np.nan, 1.0])
    assert nan_equal(got.arousal, [0.2, np.nan, 0.9, 0.3, -1.0])
    assert got.counts == va.Counts(frames=5, unannotated=2)


def test_affwild2_va_long_file_and_utf16(tmp_path):
    rng = np.random.default_rng(1)
    table = np.round(rng.uniform(-1, 1, (30000, 2)), 6)
    table[rng.random(30000) < 0.1] = -5
    text = "valence,arousal\n" + "\n".join(f"{v:g},{a:g}" for v, a in table) + "\n"
    got = va.read_affwild2_va(write(tmp_path / "long.txt", text), frames=30000)
    expected = np.where(table == -5, np.nan, table)
    assert nan_equal(got.valence, expected[:, 0]) and nan_equal(got.arousal, expected[:, 1])
    assert got.counts.unannotated == int(np.count_nonzero(table[:, 0] == -5))
    # Windows "Unicode" (UTF-16 with BOM), spaces after the comma and blank lines at the end
    utf16 = write(tmp_path / "utf16.txt", "Valence, Arousal\n0.5, -0.25\n-5, 0\n\n\n", crlf=True, encoding="utf-16")
    got = va.read_affwild2_va(utf16)
    assert nan_equal(got.valence, [0.5, np.nan]) and nan_equal(got.arousal, [-0.25, 0.0])


def test_frame_count_mismatch_fit(tmp_path):
    path = write(tmp_path / "v.txt", "valence,arousal\n0.1,0.1\n0.2,0.2\n0.3,0.3\n")
    longer = va.read_affwild2_va(path, frames=2, mismatch="fit")
    assert nan_equal(longer.valence, [0.1, 0.2]) and longer.counts.truncated == 1
    shorter = va.read_affwild2_va(path, frames=5, mismatch="fit")
    assert nan_equal(shorter.arousal, [0.1, 0.2, 0.3, np.nan, np.nan])
    assert (shorter.counts.padded, shorter.counts.unannotated) == (2, 2)
    with pytest.raises(ValueError, match="mismatch"):
        va.read_affwild2_va(path, frames=2, mismatch="truncate")


def test_find_annotation_files(tmp_path):
    for name in ("video1.txt", "video2_left.txt", "video2_right.txt", "video10_left.txt", "video1.csv",
                 "video3_left.TXT"):
        write(tmp_path / "VA" / name, "valence,arousal\n0,0\n")
    folder = str(tmp_path / "VA")
    assert va.find_annotation_files(folder, "video1") == [("", os.path.join(folder, "video1.txt"))]
    assert va.find_annotation_files(folder, "video2") == [("left", os.path.join(folder, "video2_left.txt")),
                                                          ("right", os.path.join(folder, "video2_right.txt"))]
    assert va.find_annotation_files(folder, "video3") == [("left", os.path.join(folder, "video3_left.TXT"))]
    assert va.find_annotation_files(folder, "video4") == []
    assert va.find_annotation_files(str(tmp_path / "absent"), "video1") == []
    write(tmp_path / "VA" / "video1_right.txt", "valence,arousal\n0,0\n")
    with pytest.raises(BadInput, match="both a single-person file and left/right"):
        va.find_annotation_files(folder, "video1")


# --- Aff-Wild2 expressions and class mapping -------------------------------------------------------

def test_affwild2_expressions_into_thesis_003_order(tmp_path):
    values = [0, 1, 2, 3, 4, 5, 6, 7, -1, 7, 4]
    path = write(tmp_path / "EXPR" / "video5_right.txt",
                 AFFWILD2_EXPR_HEADER + "\n" + "\n".join(map(str, values)) + "\n", bom=True, crlf=True)
    got = va.read_affwild2_expressions(path, AFFWILD_CATEGORIES, frames=len(values))
    names = [AFFWILD_CATEGORIES[c] if c >= 0 else None for c in got.category]
    assert names == ["Neutral", "Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", None, None, None, "Happy"]
    assert got.category.dtype == np.int64
    assert got.counts.unmapped == {"Other": 2}
    assert (got.counts.frames, got.counts.unannotated) == (11, 3)


def test_expression_header_of_seven_classes_and_own_spelling(tmp_path):
    path = write(tmp_path / "abaw2.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n4\n-1\n6\n")
    got = va.read_affwild2_expressions(path, AFFWILD_CATEGORIES)
    assert got.category.tolist() == [1, -1, 5] and got.counts.unmapped == {}
    # an order that spells Aff-Wild2's names itself keeps them; names match case-insensitively
    assert va.map_classes(["Happiness", "ANGER", "Other"], ("anger", "Happiness")).tolist() == [1, 0, -1]
    assert va.map_classes(["Anger"], AFFWILD_CATEGORIES, aliases={}).tolist() == [-1]


# --- Aff-Wild (first version) and thesis 003's category file ----------------------------------------

def test_affwild_first_version(tmp_path):
    write(tmp_path / "valence" / "105.txt", "0.1\n-0.2\n0.3\n", crlf=True)
    write(tmp_path / "arousal" / "105.txt", "0.5\n0.6\n-1\n", bom=True)
    got = va.read_affwild_va(str(tmp_path), "105")
    assert nan_equal(got.valence, [0.1, -0.2, 0.3]) and nan_equal(got.arousal, [0.5, 0.6, -1.0])
    assert got.counts == va.Counts(frames=3, unannotated=0)
    write(tmp_path / "arousal" / "106.txt", "0.5\n0.6\n")
    write(tmp_path / "valence" / "106.txt", "0.5\n0.6\n0.7\n")
    with pytest.raises(BadInput) as err:
        va.read_affwild_va(str(tmp_path), "106")
    assert os.path.join("arousal", "106.txt") in str(err.value) and "line 3:" in str(err.value)


def test_thesis_003_category_file(tmp_path):
    path = write(tmp_path / "cat" / "v.txt", "0\n2\n-1\n6\n", crlf=True)
    got = va.read_categories(path, AFFWILD_CATEGORIES, frames=4)
    assert got.category.tolist() == [0, 2, -1, 6]
    assert (got.counts.frames, got.counts.unannotated) == (4, 1)


# --- Joystick logs: nearest timestamp ---------------------------------------------------------------

def brute_nearest(times, frame_times, max_gap):
    distance = np.abs(np.asarray(times)[None, :] - np.asarray(frame_times)[:, None])
    index = np.argmin(distance, axis=1)  # first of equal distances: the earlier annotation
    index[distance.min(axis=1) > max_gap] = -1
    return index


@pytest.mark.parametrize("seed", range(8))
def test_nearest_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    # Quarter-second grids make exact ties (frames halfway between annotations) and shared times.
    times = np.sort(rng.integers(0, 400, rng.integers(1, 60))) / 4.0
    frame_times = np.concatenate([rng.integers(-20, 440, 200) / 8.0, rng.uniform(-5, 115, 200)])
    for max_gap in (0.0, 0.125, 0.5, 3.0, math.inf):
        assert np.array_equal(va.nearest(times, frame_times, max_gap), brute_nearest(times, frame_times, max_gap))


def test_nearest_ties_and_gap():
    times = np.array([0.0, 1.0, 1.0, 2.0])
    assert va.nearest(times, [0.5, 1.0, 1.5, 2.6, 3.1], max_gap=1.0).tolist() == [0, 1, 1, 3, -1]
    assert va.nearest([], [0.0], max_gap=1.0).tolist() == [-1]


def test_read_timed_va(tmp_path):
    valence = write(tmp_path / "ann1" / "valence.txt", "0.000 0.10\n0.031,0.20\n0.080\t-0.30\n0.200 0.5\n",
                    crlf=True)
    arousal = write(tmp_path / "ann1" / "arousal.txt", "0.01, -0.5\n0.05 , 0.25\n", bom=True)
    frame_times = np.arange(6) / 25.0  # 0, .04, .08, .12, .16, .20
    got = va.read_timed_va(valence, arousal, frame_times, max_gap=0.05)
    assert nan_equal(got.valence, [0.1, 0.2, -0.3, -0.3, 0.5, 0.5])
    assert nan_equal(got.arousal, [-0.5, 0.25, 0.25, np.nan, np.nan, np.nan])
    assert got.counts == va.Counts(frames=6, unannotated=3)
    values, counts = va.read_timed(arousal, frame_times, max_gap=math.inf)
    assert nan_equal(values, [-0.5, 0.25, 0.25, 0.25, 0.25, 0.25]) and counts.unannotated == 0


# --- Thesis 001's frame list and AffectNet: untrusted paths -----------------------------------------

def test_frame_list(tmp_path):
    root = tmp_path / "db"
    absolute = str(root / "frames" / "v2" / "00001.jpg")
    path = write(root / "labels" / "train.txt",
                 f"../frames/v1/00001.jpg,0.25,-0.5\n../frames/v1/00002.jpg, 0.3 ,1\n{absolute},-1,0\n"
                 "../frames/odd,name.jpg,0,0\n", crlf=True, bom=True)
    got = va.read_frame_list(path, root=str(root), frames=4)
    assert got.paths == [str(root / "frames" / "v1" / "00001.jpg"), str(root / "frames" / "v1" / "00002.jpg"),
                         absolute, str(root / "frames" / "odd,name.jpg")]
    assert nan_equal(got.valence, [0.25, 0.3, -1, 0]) and nan_equal(got.arousal, [-0.5, 1, 0, 0])
    # without a root, the file's own folder is the root: ../frames leaves it
    with pytest.raises(BadInput) as err:
        va.read_frame_list(path)
    assert err.value.reason == va.UNSAFE_PATH and "line 1:" in str(err.value)


@pytest.mark.parametrize("entry", ["../../etc/passwd", "/etc/passwd", "../frames/../../x.jpg", "..", "."])
def test_frame_list_refuses_paths_leaving_the_root(tmp_path, entry):
    root = tmp_path / "db"
    path = write(root / "labels.txt", f"frames/1.jpg,0,0\n{entry},0,0\n")
    with pytest.raises(BadInput) as err:
        va.read_frame_list(path)
    assert err.value.reason == va.UNSAFE_PATH and path in str(err.value) and "line 2:" in str(err.value)


def test_affectnet(tmp_path):
    rows = [f"689/737db248.jpg,134,134,899,899,{LANDMARKS},1,0.785714,-0.055556",
            f'392/c4db2f9b.png,20,20,180,180,"{LANDMARKS}",9,-2,-2',
            f"468/21772b68.jpg,0,0,300,300,{LANDMARKS},2,-0.5,1"]
    path = write(tmp_path / "Manually_Annotated_file_lists" / "training.csv",
                 AFFECTNET_HEADER + "\n" + "\n".join(rows) + "\n", crlf=True, bom=True)
    got = va.read_affectnet(path)
    assert [r.path for r in got] == ["689/737db248.jpg", "392/c4db2f9b.png", "468/21772b68.jpg"]
    assert got[0].box == (134, 134, 899, 899) and got[0].expression == 1 and got[0].line == 2
    assert (got[0].valence, got[0].arousal) == (0.785714, -0.055556)
    assert math.isnan(got[1].valence) and math.isnan(got[1].arousal) and got[1].expression == 9
    assert (got[2].valence, got[2].arousal, got[2].line) == (-0.5, 1.0, 4)


# --- merge ------------------------------------------------------------------------------------------

def test_merge():
    valence = np.array([0.1, np.nan, 0.3, 0.4, np.nan], np.float32)
    arousal = np.array([0.1, 0.2, np.nan, 0.4, np.nan], np.float32)
    mask, counts = va.merge(valence, arousal)
    assert mask.tolist() == [True, False, False, True, False]
    assert counts == {"frames": 5, "annotated": 2, "unannotated": 3}
    mask, counts = va.merge(valence, arousal, np.array([2, 1, 1, -1, 0]))
    assert mask.tolist() == [True, False, False, False, False] and counts["annotated"] == 1
    with pytest.raises(ValueError, match="shape"):
        va.merge(valence, arousal[:4])


# --- every malformed case: the file and the 1-based line --------------------------------------------

VA_HEAD = "valence,arousal\n"
MALFORMED = [
    # (reader, file text, line, words in the message)
    ("affwild2_va", "0.1,0.2\n0.3,0.4\n", 1, "expected 'valence,arousal'"),  # header missing
    ("affwild2_va", "arousal,valence\n0.1,0.2\n", 1, "header"),  # columns swapped
    ("affwild2_va", "valence\n0.1\n", 1, "header"),
    ("affwild2_va", VA_HEAD + "0.1,0.2\n0.3\n", 3, "1 fields, expected 2"),
    ("affwild2_va", VA_HEAD + "0.1,0.2\n0.3,0.4,0.5\n", 3, "3 fields"),
    ("affwild2_va", VA_HEAD + "0.1,0.2\n0.3,0.4\nabc,0.1\n", 4, "valence 'abc' is not a number"),
    ("affwild2_va", VA_HEAD + "0.1,nan\n", 2, "arousal 'nan' is not a number"),
    ("affwild2_va", VA_HEAD + "0.1,1e999\n", 2, "not finite"),
    ("affwild2_va", VA_HEAD + "0.1,0.2\n1.5,0\n", 3, "valence 1.5 is outside [-1, 1] or -5"),
    ("affwild2_va", VA_HEAD + "-4,0\n", 2, "valence -4 is outside"),
    ("affwild2_va", VA_HEAD + "0.1,0.2\n\n0.1,0.2\n", 3, "empty line"),
    ("affwild2_va", VA_HEAD + "0.1,0.2\n0\xe9,0.1\n", 3, "not a number"),  # bytes that are not UTF-8
    ("affwild2_va", "", 1, "empty file"),
    ("affwild2_va", VA_HEAD, 2, "no value lines"),
    ("affwild2_va_3_frames", VA_HEAD + "0,0\n0,0\n0,0\n0,0\n0,0\n", 5, "past the video's last frame"),
    ("affwild2_va_3_frames", VA_HEAD + "0,0\n0,0\n", 4, "ends before this line with 2 value lines"),
    ("expressions", "0\n1\n", 1, "not a list of class names"),  # header missing
    ("expressions", "valence,arousal\n0\n", 1, "no class of the header"),
    ("expressions", "Neutral,Anger,anger\n0\n", 1, "names a class twice"),
    ("expressions", AFFWILD2_EXPR_HEADER + "\n0\n8\n", 3, "expression 8 is not -1"),
    ("expressions", AFFWILD2_EXPR_HEADER + "\n0\n-2\n", 3, "expression -2 is not -1"),
    ("expressions", AFFWILD2_EXPR_HEADER + "\n0\n1.0\n", 3, "'1.0' is not an integer"),
    ("expressions", AFFWILD2_EXPR_HEADER + "\n0\n1,2\n", 3, "2 fields"),
    ("categories", "0\n6\n7\n", 3, "category 7 is not -1"),
    ("categories", "0\nHappy\n", 2, "'Happy' is not an integer"),
    ("categories_3_frames", "0\n1\n2\n3\n", 4, "past the video's last frame"),
    ("timed", "0.0 0.1\n0.5 0.2\n0.4 0.3\n", 3, "time 0.4 s comes before the previous line's 0.5 s"),
    ("timed", "0.0 0.1\n0.5 0.2 0.3\n", 2, "3 fields, expected 2 (time,value)"),
    ("timed", "0.0 0.1\n0.5,,0.2\n", 2, "3 fields"),
    ("timed", "time value\n0.0 0.1\n", 1, "time 'time' is not a number"),
    ("timed", "0.0 0.1\n0.5 -1.01\n", 2, "value -1.01 is outside [-1, 1]"),
    ("frames", "a.jpg,0.1,0.2\nb.jpg,0.1\n", 2, "2 fields, expected 3 (path,valence,arousal)"),
    ("frames", "a.jpg,0.1,0.2\nb.jpg,0.1,2\n", 2, "arousal 2 is outside [-1, 1]"),
    ("frames", "a.jpg,0.1,0.2\n,0.1,0.2\n", 2, "empty frame path"),
    ("frames", "a.jpg,0.1,0.2\n./a.jpg,0.1,0.2\n", 2, "listed twice (first on line 1)"),
    ("affectnet", "subDirectory_filePath,face_x\n", 1, "header"),
    ("affectnet", AFFECTNET_HEADER + f"\n1/a.jpg,0,0,10,10,{LANDMARKS},1,0.1\n", 2, "8 fields, expected 9"),
    ("affectnet", AFFECTNET_HEADER + f"\n1/a.jpg,0,0,10,10,{LANDMARKS},1,0.1,0.2\n1/b.jpg,0,0,10,10,{LANDMARKS},"
                                     "1,-3,0.2\n", 3, "valence '-3' is not a number in [-1, 1] or -2"),
    ("affectnet", AFFECTNET_HEADER + f"\n1/a.jpg,0,0,10,10,{LANDMARKS},11,0.1,0.2\n", 2, "expression 11"),
    ("affectnet", AFFECTNET_HEADER + f"\n1/a.jpg,0,0,ten,10,{LANDMARKS},1,0.1,0.2\n", 2, "face_width 'ten'"),
    ("affectnet", AFFECTNET_HEADER + f"\n1/a.jpg,0,0,0,10,{LANDMARKS},1,0.1,0.2\n", 2, "face box"),
    ("affectnet", AFFECTNET_HEADER + f"\n../a.jpg,0,0,10,10,{LANDMARKS},1,0.1,0.2\n", 2, "not a path inside"),
    ("affectnet", AFFECTNET_HEADER + f"\n/etc/a.jpg,0,0,10,10,{LANDMARKS},1,0.1,0.2\n", 2, "not a path inside"),
]

READERS = {
    "affwild2_va": lambda p: va.read_affwild2_va(p),
    "affwild2_va_3_frames": lambda p: va.read_affwild2_va(p, frames=3),
    "expressions": lambda p: va.read_affwild2_expressions(p, AFFWILD_CATEGORIES),
    "categories": lambda p: va.read_categories(p, AFFWILD_CATEGORIES),
    "categories_3_frames": lambda p: va.read_categories(p, AFFWILD_CATEGORIES, frames=3),
    "timed": lambda p: va.read_timed(p, np.arange(10) / 25.0, max_gap=0.1),
    "frames": lambda p: va.read_frame_list(p),
    "affectnet": lambda p: va.read_affectnet(p),
}


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("reader,text,line,words", MALFORMED, ids=[f"{c[0]}-{i}" for i, c in enumerate(MALFORMED)])
def test_malformed_names_file_and_line(tmp_path, reader, text, line, words, crlf):
    path = tmp_path / "annotations" / "video7.txt"
    os.makedirs(path.parent)
    data = (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")
    path.write_bytes(data.replace("\xe9".encode(), b"\xe9"))  # the raw byte, not its UTF-8 encoding
    with pytest.raises(BadInput) as err:
        READERS[reader](str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: line {line}: "), message
    assert words in message, message


def test_missing_files(tmp_path):
    with pytest.raises(BadInput) as err:
        va.read_affwild2_va(str(tmp_path / "none.txt"))
    assert err.value.reason == va.MISSING and "none.txt" in str(err.value)
    with pytest.raises(BadInput, match=os.path.join("valence", "9.txt")):
        va.read_affwild_va(str(tmp_path), "9")
