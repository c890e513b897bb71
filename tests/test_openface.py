"""The OpenFace 2.x FeatureExtraction CSV: exact real format written, real-format files read, clear errors."""
import re

import numpy as np
import pytest

from data_prep.errors import BadInput
from data_prep.datasets.bu4dfe.openface import find_csv, read_csv, write_csv

INTENSITY_AUS = "01 02 04 05 06 07 09 10 12 14 15 17 20 23 25 26 45".split()
PRESENCE_AUS = "01 02 04 05 06 07 09 10 12 14 15 17 20 23 25 26 28 45".split()


def real_header() -> list[str]:
    """The 714 names of OpenFace 2.2.0's RecorderCSV, spelled out from its source."""
    names = ["frame", "face_id", "timestamp", "confidence", "success",
             "gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
    for axis in "xyXYZ":
        names += [f"eye_lmk_{axis}_{i}" for i in range(56)]
    names += ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    for axis in "xyXYZ":
        names += [f"{axis}_{i}" for i in range(68)]
    names += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]
    names += [f"AU{au}_r" for au in INTENSITY_AUS] + [f"AU{au}_c" for au in PRESENCE_AUS]
    return names


def decimals(name: str) -> int:
    """Digits after the point OpenFace prints for a column (0: an integer, no point)."""
    if name in ("frame", "face_id", "success"):
        return 0
    if name.endswith("_r") or name == "confidence":
        return 2
    if name.endswith("_c"):
        return 1
    if re.fullmatch(r"gaze_[01]_[xyz]", name):
        return 6
    if name in ("timestamp", "gaze_angle_x", "gaze_angle_y", "pose_Rx", "pose_Ry", "pose_Rz") or name.startswith("p_"):
        return 3
    return 1  # eye and face landmarks, pose translation


# Hand-written data lines in the real layout: frame 2 is a frame where OpenFace lost the face.
GEOMETRY = ", ".join(["0.101015, 0.185573, -0.977427, -0.066380, 0.192549, -0.979040, 0.018, 0.193"]
                     + ["300.5"] * 280 + ["12.3, -4.5, 480.1, 0.051, -0.032, 0.010"] + ["310.2"] * 340
                     + ["1.234, 0.051, -0.032, 0.010, 320.4, 241.7"] + ["-0.512"] * 34)
LINES = [
    "1, 0, 0.000, 0.98, 1, " + GEOMETRY
    + ", 0.12, 0.00, 1.50, 0.00, 0.30, 0.00, 0.00, 0.00, 2.75, 0.00, 0.00, 0.40, 0.00, 0.00, 1.10, 0.00, 4.20"
    + ", 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0",
    "2, 0, 0.040, 0.03, 0, " + ", ".join(["0.0"] * 674) + ", " + ", ".join(["0.00"] * 17 + ["0.0"] * 18),
    "3, 0, 0.080, 0.97, 1, " + GEOMETRY
    + ", 0.00, 0.05, 2.10, 0.00, 0.00, 0.00, 0.00, 0.00, 3.05, 0.00, 0.00, 0.00, 0.00, 0.00, 1.60, 0.00, 0.00"
    + ", 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0",
]


def write_lines(path, lines, header=None):
    path.write_text("\n".join([", ".join(real_header()) if header is None else header] + lines) + "\n")
    return str(path)


def test_header_is_the_real_one(tmp_path):
    write_csv(tmp_path / "v.csv", np.zeros((2, 17)))
    header = (tmp_path / "v.csv").read_text().split("\n")[0]
    assert header.startswith("frame, face_id, timestamp, confidence, success, gaze_0_x")
    assert header == ", ".join(real_header())
    names = header.split(", ")
    assert len(names) == 714
    assert names[679:] == [f"AU{au}_r" for au in INTENSITY_AUS] + [f"AU{au}_c" for au in PRESENCE_AUS]


def test_data_lines_use_openface_fixed_notation(tmp_path):
    values = np.zeros((3, 17))
    values[0, 0], values[0, 16], values[2, 8] = 1.234, 5.0, 0.996
    write_csv(tmp_path / "v.csv", values, success=[True, False, True])
    raw = (tmp_path / "v.csv").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    header, *rows = raw.decode().rstrip("\n").split("\n")
    names = header.split(", ")
    fields = [row.split(", ") for row in rows]
    for row in fields:
        assert len(row) == 714
        for name, value in zip(names, row):
            digits = decimals(name)
            assert re.fullmatch(r"-?\d+" + (rf"\.\d{{{digits}}}" if digits else ""), value), (name, value)
    assert rows[0].startswith("1, 0, 0.000, 0.98, 1, ")
    assert rows[2].startswith("3, 0, 0.080, 0.98, 1, ")
    assert fields[0][679] == "1.23" and fields[0][695] == "5.00" and fields[2][687] == "1.00"  # AU01, AU45, AU12
    assert fields[0][696] == "1.0" and fields[0][713] == "1.0"  # AU01_c, AU45_c: intensity >= 1
    assert fields[0][712] == "0.0"  # AU28_c: no intensity, so absent
    failed = fields[1]
    assert failed[:5] == ["2", "0", "0.040", "0.02", "0"]
    assert all(float(v) == 0.0 for v in failed[5:])
    x = np.array(fields[0][names.index("x_0"):names.index("x_67") + 1], float)
    y = np.array(fields[0][names.index("y_0"):names.index("y_67") + 1], float)
    assert 200 < x.mean() < 440 and 150 < y.mean() < 330 and 60 < np.ptp(x) < 300  # a face near the centre


def test_presence_and_confidence_are_written_as_given(tmp_path):
    presence = np.zeros((2, 18))
    presence[1, 16] = 1  # AU28
    write_csv(tmp_path / "v.csv", np.full((2, 17), 3.0), presence=presence, confidence=[0.5, 0.875], fps=30.0)
    rows = [r.split(", ") for r in (tmp_path / "v.csv").read_text().split("\n")[1:3]]
    assert rows[0][696:] == ["0.0"] * 18
    assert rows[1][712] == "1.0"  # AU28_c
    assert rows[0][3] == "0.50" and rows[1][3] == "0.88" and rows[1][2] == "0.033"


def test_reads_a_hand_written_real_format_file(tmp_path):
    track = read_csv(write_lines(tmp_path / "clip.csv", LINES))
    assert track.au == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
    np.testing.assert_array_equal(track.frame, [1, 2, 3])
    np.testing.assert_allclose(track.timestamp, [0.0, 0.04, 0.08])
    np.testing.assert_allclose(track.confidence, [0.98, 0.03, 0.97])
    np.testing.assert_array_equal(track.success, [True, False, True])
    assert track.intensities.dtype == np.float64 and track.intensities.shape == (3, 17)
    first = [0.12, 0, 1.5, 0, 0.3, 0, 0, 0, 2.75, 0, 0, 0.4, 0, 0, 1.1, 0, 4.2]
    np.testing.assert_allclose(track.intensities[0], first, rtol=1e-6)
    assert not track.intensities[1].any()
    assert track.intensities[2, 8] == 3.05


def test_reads_the_no_space_variant(tmp_path):
    spaced = read_csv(write_lines(tmp_path / "a.csv", LINES))
    compact = read_csv(write_lines(tmp_path / "b.csv", [line.replace(", ", ",") for line in LINES],
                                   header=",".join(real_header())))
    assert compact.au == spaced.au
    np.testing.assert_array_equal(compact.intensities, spaced.intensities)
    np.testing.assert_array_equal(compact.success, spaced.success)


def test_round_trip_rounds_to_two_decimals_and_clips(tmp_path):
    values = np.random.default_rng(3).uniform(-0.5, 5.5, (40, 17))
    success = np.arange(40) % 7 != 3
    write_csv(tmp_path / "v.csv", values, success=success, rng=np.random.default_rng(1))
    track = read_csv(str(tmp_path / "v.csv"))
    expected = np.array([[float(f"{v:.2f}") for v in row] for row in np.clip(values, 0, 5)])
    expected[~success] = 0.0
    np.testing.assert_allclose(track.intensities, expected, atol=1e-6)
    np.testing.assert_array_equal(track.success, success)
    np.testing.assert_array_equal(track.frame, np.arange(1, 41))
    np.testing.assert_allclose(track.timestamp, np.round(np.arange(40) / 25.0, 3))


def bad(path):
    with pytest.raises(BadInput) as info:
        read_csv(path)
    assert str(info.value).startswith(str(path))
    return info.value


def test_missing_and_empty_files(tmp_path):
    assert bad(str(tmp_path / "none.csv")).reason == "missing_openface_csv"
    (tmp_path / "empty.csv").write_text("")
    error = bad(str(tmp_path / "empty.csv"))
    assert error.reason == "bad_openface_csv" and "empty" in error.message
    assert "no frames" in bad(write_lines(tmp_path / "h.csv", [])).message


def test_header_without_au_columns(tmp_path):
    path = write_lines(tmp_path / "v.csv", ["1, 0, 0.000, 0.98, 1, 310.0"],
                       header="frame, face_id, timestamp, confidence, success, x_0")
    error = bad(path)
    assert error.reason == "bad_openface_csv"
    assert "AUxx_r" in error.message and "frame, face_id" in error.message
    assert "OpenFace FeatureExtraction" in error.message


@pytest.mark.parametrize("line, edit, words", [
    (3, lambda s: s.rsplit(", ", 1)[0], ["line 3", "713 values", "714"]),
    (4, lambda s: s.replace("3, 0, 0.080, 0.97, 1, ", "2, 0, 0.080, 0.97, 1, "), ["line 4", "frame 2", "increase"]),
    (2, lambda s: s.replace(", 0.30, ", ", n/a, "), ["line 2", "AU06_r", "'n/a'"]),
    (4, lambda s: s.replace("0.080", "nan"), ["line 4", "timestamp"]),
    (3, lambda s: s.replace("2, 0, 0.040, 0.03, 0, ", "two, 0, 0.040, 0.03, 0, "), ["line 3", "column frame"]),
])
def test_malformed_rows_name_the_line_and_column(tmp_path, line, edit, words):
    lines = list(LINES)
    lines[line - 2] = edit(lines[line - 2])
    error = bad(write_lines(tmp_path / "v.csv", lines))
    assert error.reason == "bad_openface_csv"
    for word in words:
        assert word in error.message


def test_find_csv(tmp_path):
    (tmp_path / "M042_happy_tex.csv").write_text("")
    (tmp_path / "F001_sad.CSV").write_text("")
    (tmp_path / "F001_sad_of_details.txt").write_text("")
    (tmp_path / "F002.avi.csv").write_text("")
    assert find_csv(str(tmp_path), "M042_happy_tex") == str(tmp_path / "M042_happy_tex.csv")
    assert find_csv(str(tmp_path), "F001_sad") == str(tmp_path / "F001_sad.CSV")
    assert find_csv(str(tmp_path), "F002") is None
    assert find_csv(str(tmp_path), "m042_happy_tex") is None
    assert find_csv(str(tmp_path / "absent"), "M042_happy_tex") is None
