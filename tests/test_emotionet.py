"""EmotioNet (thesis 004): the label sheet, the three label modes, the split, the valence/arousal CSV,
and the whole path synthetic sheet -> local server -> download -> prepare -> verify."""
import json
import os

import numpy as np
import pytest

from data_prep.datasets.emotionet import layout
from data_prep.datasets.emotionet.options import EmotionetOptions
from data_prep.datasets.emotionet.sheet import read_sheet
from fer_keras.classes import EMOTIONET_11_AUS
from fer_keras.data.schema import dataset_from_manifest

ELEVEN = [au - 1 for au in EMOTIONET_11_AUS]


def _row(active=(), unknown=(), rest=999):
    """60 labels: the 11 annotated AUs 0 unless active or 999 (unknown), every other AU `rest`."""
    row = [rest] * 60
    for au in EMOTIONET_11_AUS:
        row[au - 1] = 999 if au in unknown else int(au in active)
    return row


def _write_csv(path, lines):
    with open(path, "w", newline="") as f:
        f.write("".join(line + "\n" for line in lines))


def _cells(url, row):
    return ",".join([url, *map(str, row)])


# --- the sheet -------------------------------------------------------------------------------------

def test_sheet_rows_problems_duplicates_and_comma_urls(tmp_path):
    good = _row(active=(6, 12))
    lines = ["URL," + ",".join(f"AU{i}" for i in range(1, 61)),           # row 1: a header
             _cells("http://a.example/x.jpg", good),                     # 2
             '"http://a.example/q,uoted.jpg",' + ",".join(map(str, good)),  # 3: quoted comma URL
             _cells("http://a.example/un,quo,ted.jpg", good),            # 4: unquoted: read back whole
             _cells("http://a.example/short.jpg", good[:-1]),            # 5: 60 columns
             _cells("http://a.example/two.jpg", good[:4] + [2] + good[5:]),  # 6: AU 5 is 2
             _cells("", good),                                           # 7: empty URL
             _cells("http://a.example/x.jpg", good),                     # 8: duplicate, same labels
             "",                                                         # blank line, ignored
             _cells("http://a.example/x.jpg", _row()),                   # 10: duplicate, other labels
             _cells("http://a.example/float.jpg", [f"{v}.0" for v in good])]  # 11: 1.0 is 1
    _write_csv(tmp_path / "s.csv", lines)
    sheet = read_sheet(tmp_path / "s.csv")
    assert sheet.header and sheet.comma_urls == 1
    assert [r.url for r in sheet.rows] == ["http://a.example/x.jpg", "http://a.example/q,uoted.jpg",
                                           "http://a.example/un,quo,ted.jpg", "http://a.example/float.jpg"]
    assert [r.row for r in sheet.rows] == [2, 3, 4, 11]
    assert all(np.array_equal(r.aus, good) for r in sheet.rows)
    assert [(p["row"], p["problem"].split(",")[0]) for p in sheet.problems] == [
        (5, "60 columns"), (6, "AU 5 is '2'"), (7, "empty URL")]
    assert sheet.duplicates == [{"url": "http://a.example/x.jpg", "rows": [2, 8, 10], "same_labels": False}]


def test_xlsx_and_csv_read_the_same(tmp_path):
    import openpyxl

    rows = [["http://a.example/1.jpg", *_row(active=(1,))], ["http://a.example/2,b.jpg", *_row(unknown=(4,))],
            ["http://a.example/3.jpg", *_row()[:30], 7, *_row()[31:]]]
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.active.append([None] * 61)  # openpyxl pads; empty rows are ignored
    book.save(tmp_path / "s.xlsx")
    _write_csv(tmp_path / "s.csv", [",".join(f'"{c}"' if "," in str(c) else str(c) for c in r) for r in rows])
    read = [read_sheet(tmp_path / name) for name in ("s.xlsx", "s.csv")]
    for sheet in read:
        assert not sheet.header and [r.url for r in sheet.rows] == [rows[0][0], rows[1][0]]
        assert sheet.problems == [{"row": 3, "url": rows[2][0], "problem": "AU 31 is '7', expected 0, 1 or 999"}]
    assert all(np.array_equal(a.aus, b.aus) for a, b in zip(read[0].rows, read[1].rows))


def test_sheet_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.xlsx: no such file"):
        read_sheet(tmp_path / "nope.xlsx")
    (tmp_path / "s.txt").write_text("x")
    with pytest.raises(ValueError, match=r"s.txt: unknown sheet type '.txt'"):
        read_sheet(tmp_path / "s.txt")
    (tmp_path / "bad.xlsx").write_bytes(b"PK\x03\x04 not a workbook")
    with pytest.raises(ValueError, match="bad.xlsx: not a readable .xlsx workbook"):
        read_sheet(tmp_path / "bad.xlsx")


# --- label modes, split, valence/arousal -------------------------------------------------------------

def test_label_modes_give_the_expected_counts():
    """A constructed sheet: 5 images with no 999 among the 11 AUs, 3 with one, 2 with all of them."""
    rows = ([np.array(_row(active=(6, 12)), np.int16)] * 5 + [np.array(_row(unknown=(9,)), np.int16)] * 3
            + [np.array(_row(unknown=EMOTIONET_11_AUS), np.int16)] * 2)
    kept = {mode: [layout.targets(r, mode) for r in rows] for mode in ("60", "11", "masked")}
    assert [sum(t is not None for t, _ in kept[m]) for m in ("60", "11", "masked")] == [10, 5, 10]
    sixty, _ = kept["60"][0]
    assert sixty.shape == (60,) and set(np.unique(sixty)) == {0.0, 1.0} and sixty[[5, 11]].tolist() == [1, 1]
    masked, _ = kept["masked"][5]
    assert masked[8] == 999 and (masked == 999).sum() == 50  # AU 9 and the 49 unannotated kept as 999
    eleven, _ = kept["11"][0]
    assert eleven.shape == (11,) and eleven.tolist() == [float(au in (6, 12)) for au in EMOTIONET_11_AUS]
    assert kept["11"][5] == (None, "AU 9 is 999 (occluded or not annotated)")


@pytest.mark.parametrize("mode,share", [("60", 15000 / 21400), ("11", 10282 / 14706)])
def test_split_follows_the_thesis_share_and_the_seed(mode, share):
    urls = [f"http://a.example/{i}.jpg" for i in range(2000)]
    opts = EmotionetOptions(labels=mode)
    ranks = layout._ranks(urls, 0)
    split = {u: layout.split_of(u, opts, ranks) for u in urls}
    assert abs(sum(s == "train" for s in split.values()) / 2000 - share) < 1e-3
    reordered, reseeded = layout._ranks(list(reversed(urls)), 0), layout._ranks(urls, 1)
    assert {u: layout.split_of(u, opts, reordered) for u in urls} == split
    assert {u: layout.split_of(u, opts, reseeded) for u in urls} != split
    held = EmotionetOptions(labels=mode, val_fraction=0.1)
    drawn = [layout.split_of(u, held, ranks) for u in urls]
    counts = {s: drawn.count(s) for s in ("train", "val", "test")}
    assert counts["test"] == sum(s == "test" for s in split.values()) and abs(counts["val"] - 0.1 * share * 2000) <= 1


def test_va_csv_by_url_or_file_name_with_its_scale(tmp_path):
    path = tmp_path / "va.csv"
    _write_csv(path, ["image,valence,arousal", "http://a.example/1.jpg,5,-10", "face-1a2b.jpg,-2.5,0",
                      "http://a.example/3.jpg,11,0", "http://a.example/4.jpg,1", ""])
    va, problems = layout.read_va(path, {"face-1a2b.jpg": "http://a.example/2.jpg"}, 10.0)
    assert {u: v.tolist() for u, v in va.items()} == {"http://a.example/1.jpg": [0.5, -1.0],
                                                      "http://a.example/2.jpg": [-0.25, 0.0]}
    assert [p["line"] for p in problems] == [4, 5] and "outside [-10, 10] (set --va-scale)" in problems[0]["problem"]


def test_options_refused_up_front(tmp_path):
    with pytest.raises(ValueError, match="emotionet option labels must be one of 60, 11, masked, got '12'"):
        EmotionetOptions(labels="12")
    with pytest.raises(FileNotFoundError, match=r"emotionet option va_csv: nope.csv: no such file \(nor in "):
        EmotionetOptions(va_csv="nope.csv").va_path(str(tmp_path))
    (tmp_path / "va.csv").write_text("image,valence,arousal\n")
    assert EmotionetOptions(va_csv="va.csv").va_path(str(tmp_path)) == str(tmp_path / "va.csv")
    with pytest.raises(ValueError, match="emotionet option val_fraction must be 0..0.5"):
        EmotionetOptions(val_fraction=0.7)
    with pytest.raises(FileNotFoundError, match="labels.csv: no such file; .* is not an EmotioNet download"):
        layout.read_labels(tmp_path)


# --- the whole path -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    """The small synthetic EmotioNet, downloaded by `fer-keras download` from its local server."""
    from data_prep.datasets.emotionet.server import LocalServer
    from data_prep.datasets.emotionet.synthetic import EmotionetSpec, SERVER, write_emotionet
    from fer_keras.cli import main

    work = tmp_path_factory.mktemp("emotionet")
    src, out = work / "synthetic", work / "download"
    truth = write_emotionet(str(src), EmotionetSpec(images=8, va_images=6, min_side=96))
    routes = json.loads((src / "server" / "routes.json").read_text())
    with LocalServer(str(src / "server"), routes) as server:
        address = server.base_url.split("//", 1)[1]
        hops = [f"{host}:{address if target == SERVER else target}" for host, target in truth["resolve"].items()]
        # the stall ends by the timeout; a good image slowed past it by a loaded machine is retried once
        argv = ["download", "emotionet", str(src / "emotionet.csv"), str(out), "--timeout", "2", "--deadline", "8",
                "--retries", "1", "--backoff", "0.1", "--max-bytes", "4000000", "-q"] + \
            [a for hop in hops for a in ("--connect-to", hop)]
        assert main(argv) == 0
        requests = dict(server.requests)
        assert main(argv) == 0  # a rerun fetches nothing again
        assert dict(server.requests) == requests
        for i in range(2):  # and two workers sharing another OUT (--shard I/2) download it all between them
            argv[3] = str(work / "shared")
            assert main(argv + ["--shard", f"{i}/2"]) == 0
    return src, out, truth


def test_every_url_ends_as_the_synthetic_truth_says(downloaded):
    from data_prep.download import read_index

    src, out, truth = downloaded
    index = read_index(out)
    assert {u["url"]: u["expect"] for u in truth["urls"]} == {
        url: "ok" if e["status"] == "ok" else e["class"] for url, e in index.items()}
    images = [p for p in (out / "images").rglob("*") if p.is_file()]
    assert len(images) == sum(u["expect"] == "ok" for u in truth["urls"])  # no partial file, nothing else
    assert all(os.path.realpath(p).startswith(os.path.realpath(out) + os.sep) for p in images)
    report = json.loads((out / "sheet_report.json").read_text())
    assert [(p["row"], p["problem"].split(",")[0]) for p in report["problems"]] == [
        (p["row"], p["problem"]) for p in truth["sheet_problems"] if p["problem"] != "duplicate"]
    assert report["duplicate_urls"] == 1 and report["unquoted_comma_urls"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == len(images) and summary["total"] == len(truth["urls"])
    shared = read_index(out.parent / "shared")  # the two workers' indexes, read as one
    assert {u: e["status"] for u, e in shared.items()} == {u: e["status"] for u, e in index.items()}
    parts = [json.loads((out.parent / "shared" / f"summary-{i}-of-2.json").read_text()) for i in range(2)]
    assert sum(p["total"] for p in parts) == len(truth["urls"]) and all(p["total"] for p in parts)


@pytest.mark.parametrize("mode", ["60", "11", "masked", "va"])
def test_prepare_every_mode_and_verify(downloaded, tmp_path, mode):
    from data_prep.registry import dataset
    from fer_keras.cli import main
    from fer_keras.data.schema import dataset_from_manifest

    src, out, truth = downloaded
    entry = dataset("emotionet")
    values = dict(image_size=32, train_fraction=0.5, **({"va_csv": str(src / "va.csv")} if mode == "va" else
                                                         {"labels": mode}))
    info = entry.prepare(str(out), str(tmp_path / mode), entry.make_options(values), progress=False)
    ok = {u["url"]: np.array(u["aus"]) for u in truth["urls"] if u["expect"] == "ok"}
    expected = {"60": len(ok), "masked": len(ok), "11": sum((v[ELEVEN] != 999).all() for v in ok.values()),
                "va": sum(r["image"] in ok for r in truth["va"])}[mode]
    assert sum(s["videos"] for s in info["splits"].values()) == expected > 0
    if mode != "va":  # evaluation names each AU's row of the per-AU metrics by these
        assert info["labels"]["au_names"][:3] == (["AU1", "AU2", "AU4"] if mode == "11" else ["AU1", "AU2", "AU3"])
    assert info["selection"]["dropped_999"] == (len(ok) - expected if mode == "11" else 0)
    assert main(["verify", str(tmp_path / mode), "--records"]) == 0
    width = {"60": 60, "masked": 60, "11": 11}.get(mode)
    for record in dataset_from_manifest(info, str(tmp_path / mode), "train"):
        url = info["videos"][f"train/{record['video_id'].numpy().decode()}"]["source"]
        if width:
            labels = record["au"].numpy()[0]
            assert labels.shape == (width,)
            want = ok[url] if mode == "masked" else np.where(ok[url] == 999, 0, ok[url])
            assert np.array_equal(labels, want[ELEVEN] if mode == "11" else want)
        else:
            row = next(r for r in truth["va"] if r["image"] == url)
            np.testing.assert_allclose(record["va"].numpy()[0], [row["valence"] / 10, row["arousal"] / 10])


def test_connect_to_is_curls_syntax_and_a_bad_one_is_refused():
    from data_prep.download import parse_connect_to

    assert parse_connect_to("emotionet.test:80:127.0.0.1:8000") == ("emotionet.test:80", "127.0.0.1:8000")
    for bad in ("emotionet.test:80", "emotionet.test:http:127.0.0.1:8000", ":80:127.0.0.1:1"):
        with pytest.raises(ValueError, match="expected HOST:PORT:ADDRESS:PORT"):
            parse_connect_to(bad)


@pytest.mark.slow
def test_prepare_with_faces_crops_mtcnns_face(downloaded, tmp_path):
    """--faces: MTCNN's most confident face of each image instead of its central square; an image
    without one is logged in failures.jsonl, never dropped silently."""
    from data_prep.registry import dataset

    _, out, truth = downloaded
    entry = dataset("emotionet")
    info = entry.prepare(str(out), str(tmp_path / "faces"), entry.make_options(
        dict(image_size=48, labels="masked", faces=True)), progress=False)
    ok = sum(u["expect"] == "ok" for u in truth["urls"])
    found = sum(s["videos"] for s in info["splits"].values())
    failed = [v for v in info["videos"].values() if v["status"] != "ok"]
    assert found + len(failed) == ok and found >= 0.8 * ok
    assert all(v["reason"] == "no_face" for v in failed)
    lines = (tmp_path / "faces" / "failures.jsonl").read_text().splitlines() if failed else []
    assert len(lines) == len(failed)


def test_image_model_batches_one_frames_au_labels(downloaded, tmp_path):
    """An image model (inputs [image]) predicts (B, A): its targets and weights are its one frame's,
    (B, A) and (B,), not the (B, 1, A) frame lists a sequence model gets (which a loss would broadcast)."""
    import argparse

    from data_prep.registry import dataset
    from fer_keras.data import loader
    from fer_keras.data.pipeline import PipelineConfig

    _, out, _ = downloaded
    entry = dataset("emotionet")
    info = entry.prepare(str(out), str(tmp_path / "p"), entry.make_options(dict(image_size=32)), progress=False)
    data = argparse.Namespace(format="tfrecord", root=str(tmp_path / "p"), folds=None, fold=None, augmentations=(),
                              pipeline=PipelineConfig(seq_len=1, inputs=("image",), targets=("au",), batch_size=3,
                                                      shuffle_buffer=1))
    x, y, w = next(iter(loader.split(data, "train")))
    assert x["image"].shape == (3, 32, 32, 3) and y["au"].shape == (3, 11) and w["au"].shape == (3,)
    first = next(iter(dataset_from_manifest(info, str(tmp_path / "p"), "train")))
    assert np.array_equal(y["au"][0], first["au"][0])
