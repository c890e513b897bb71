"""`fer-keras prepare NAME --shard I/N` and `fer-keras merge`: N shares prepared apart (in one OUT
each or one shared OUT) and joined hold exactly what one unsharded preparation holds; a killed
share resumes alone; parts that do not make one whole are refused before anything is written."""
from __future__ import annotations

import collections
import functools
import json
import signal

import pytest
import tensorflow as tf
from killsweep import finish, start, sweep

from data_prep import share
from data_prep.registry import dataset
from data_prep.store import part_manifests
from fer_keras.cli import main
from fer_keras.data import integrity
from fer_keras.data.manifest import FAILURES, MANIFEST

PREPARE = ("import sys; from data_prep.registry import dataset; d = dataset(sys.argv[1]); "
           "d.prepare(sys.argv[2], sys.argv[3], d.make_options({**d.small, 'shard_size': 2, 'shard': sys.argv[4]}), "
           "progress=False)")


def _source(tmp_path, name):
    entry = dataset(name)
    src = tmp_path / ("src.csv" if entry.source == "file" else "src")
    entry.synthetic.synth(str(src), entry.synthetic.make_spec(entry.synthetic.small))
    return entry, str(src)


def _options(entry, **values):
    return entry.make_options({**entry.small, "shard_size": 2, **values})


def _contents(out) -> dict:
    """What a prepared dataset holds, independent of how its records fall into shards: each
    split's records (parsed: map order is not fixed across processes) as a multiset, every video's entry without its shard, the split
    counts, the failure lines; read from the files, not from what prepare returned."""
    manifest = json.loads((out / MANIFEST).read_text())
    records = {}
    for split, info in manifest["splits"].items():
        raw = [tf.train.SequenceExample.FromString(r.numpy()).SerializeToString(deterministic=True)
               for rel in info["shards"] for r in tf.data.TFRecordDataset(str(out / rel))]
        records[split] = collections.Counter(raw)
        assert len(raw) == sum(e.get("segments", 1) for e in manifest["videos"].values()
                               if e["split"] == split and e["status"] == "ok")
    failures = sorted((out / FAILURES).read_text().splitlines()) if (out / FAILURES).exists() else []
    return {"records": records, "failures": failures,
            "videos": {k: {f: v for f, v in e.items() if f != "shard"} for k, e in manifest["videos"].items()},
            "counts": {s: {k: v for k, v in i.items() if k != "shards"} for s, i in manifest["splits"].items()},
            "header": {k: manifest[k] for k in ("dataset", "classes", "options", "audio")}}


def _assert_same(merged, whole):
    got, want = _contents(merged), _contents(whole)
    for key in want:
        assert got[key] == want[key], f"{merged}: its {key} differ from the unsharded preparation's"
    assert integrity.check(str(merged), quick=False)[0] == [], f"{merged}: fer-keras verify finds problems"
    assert not part_manifests(merged), f"{merged}: partial manifests left after the merge"


@pytest.fixture(scope="module")
def fer2013(tmp_path_factory):
    """FER2013's small synthetic CSV (with malformed rows) and its unsharded preparation."""
    tmp = tmp_path_factory.mktemp("fer2013_shares")
    entry, src = _source(tmp, "fer2013")
    entry.prepare(src, tmp / "whole", _options(entry), progress=False)
    assert (tmp / "whole" / FAILURES).read_text(), "the synthetic CSV should have malformed rows to log"
    return entry, src, tmp


def test_three_shares_in_their_own_folders_merge_to_the_unsharded_dataset(fer2013):
    entry, src, tmp = fer2013
    parts = [tmp / f"part-{i}" for i in range(3)]
    keys = []
    for i, part in enumerate(parts):
        manifest = entry.prepare(src, part, _options(entry, shard=f"{i}/3"), progress=False)
        assert manifest["complete"] and manifest["share"] == [i, 3]
        assert (part / f"manifest-{i}-of-3.json").is_file() and not (part / MANIFEST).exists()
        assert all(share.owner(k, 3) == i for k in manifest["videos"])
        keys += list(manifest["videos"])
    assert len(keys) == len(set(keys)), "two shares prepared the same item"
    with pytest.raises(FileNotFoundError, match="only the shares manifest-0-of-3.json"):
        integrity.check(str(parts[0]))  # a share is not a dataset until merged
    assert main(["merge", *map(str, parts), str(tmp / "merged")]) == 0
    _assert_same(tmp / "merged", tmp / "whole")
    assert main(["merge", *map(str, parts), str(tmp / "merged")]) == 0  # run again: nothing changes
    _assert_same(tmp / "merged", tmp / "whole")


def test_shares_in_one_folder_are_joined_by_a_final_unsharded_run(fer2013):
    """Workers sharing OUT, then `prepare` without --shard: it adopts every share and prepares
    nothing again (one share never ran: the final run prepares its items)."""
    entry, src, tmp = fer2013
    out = tmp / "shared"
    for i in (0, 2):
        entry.prepare(src, out, _options(entry, shard=f"{i}/3"), progress=False)
    with pytest.raises(ValueError, match="shares 1/3 are missing"):
        entry.merge([out], out)
    entry.prepare(src, out, _options(entry), progress=False)
    _assert_same(out, tmp / "whole")
    assert json.loads((out / MANIFEST).read_text())["merged_shares"] == [0, 2]
    again = entry.prepare(src, out, _options(entry, shard="1/3"), progress=False)  # a requeued array task
    assert again["videos"] == {}, "a share rerun after the merge prepared its items again"


def test_an_interrupted_share_resumes_alone(fer2013, monkeypatch):
    """Share 1/3 stopped (Ctrl-C) after its second shard: unfinished for the merge; rerun alone, the
    three merge to the unsharded dataset (the SIGKILL sweep of this is the slow test below)."""
    from data_prep.store import PreparedStore

    entry, src, tmp = fer2013
    out = tmp / "interrupted"
    for i in (0, 2):
        entry.prepare(src, out, _options(entry, shard=f"{i}/3"), progress=False)
    flush, flushed = PreparedStore.flush, []

    def stop_after_two(self, split):
        flush(self, split)
        flushed.append(split)
        if len(flushed) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(PreparedStore, "flush", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        entry.prepare(src, out, _options(entry, shard="1/3"), progress=False)
    monkeypatch.setattr(PreparedStore, "flush", flush)
    with pytest.raises(ValueError, match="manifest-1-of-3.json: the share did not finish"):
        entry.merge([out], tmp / "merged_early")
    entry.prepare(src, out, _options(entry, shard="1/3"), progress=False)
    entry.merge([out], out)
    _assert_same(out, tmp / "whole")


@pytest.mark.slow
def test_a_killed_share_resumes_alone_and_a_killed_merge_finishes(fer2013):
    """Share 1/3 SIGKILLed after its second shard: the merge refuses it as unfinished; rerun alone,
    it completes, and a merge killed between adopting two shares, run again, ends as one run."""
    entry, src, tmp = fer2013
    out = tmp / "killed"
    argv = lambda shard: ["-c", PREPARE, "fer2013", src, str(out), shard]  # noqa: E731
    for shard in ("0/3", "2/3"):
        finish(start(argv(shard), tmp), f"share {shard}")
    proc = start(argv("1/3"), tmp, killpoint="shard_renamed@2")
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")[-1500:]
    with pytest.raises(ValueError, match="manifest-1-of-3.json: the share did not finish"):
        entry.merge([out], tmp / "merged_early")
    finish(start(argv("1/3"), tmp), "share 1/3 resumed")
    merge = ["-c", "import sys; from fer_keras.cli import main; sys.exit(main(sys.argv[1:]))", "merge", str(out), str(out)]
    proc = start(merge, tmp, killpoint="part_adopted@2")
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert len(part_manifests(out)) == 2  # killed after saving share 1 adopted, before removing its files
    finish(start(merge, tmp), "the merge run again")
    _assert_same(out, tmp / "whole")


def test_parts_that_do_not_make_one_dataset_are_refused(fer2013, tmp_path):
    entry, src, tmp = fer2013
    a, b = tmp_path / "a", tmp_path / "b"
    entry.prepare(src, a, _options(entry, shard="0/2"), progress=False)
    entry.prepare(src, b, _options(entry, shard="1/2", image_size=40), progress=False)
    with pytest.raises(ValueError, match="prepared with different face_size"):
        entry.merge([a, b], tmp_path / "m")
    with pytest.raises(ValueError, match="other options \\(face_size\\)"):  # the same shared OUT
        entry.prepare(src, a, _options(entry, shard="1/2", image_size=40), progress=False)
    with pytest.raises(ValueError, match="other options \\(face_size\\)"):  # a final run adopting them
        entry.prepare(src, a, _options(entry, image_size=40), progress=False)
    c = tmp_path / "c"
    entry.prepare(src, c, _options(entry, shard="1/3"), progress=False)
    with pytest.raises(ValueError, match="different share counts"):
        entry.merge([a, c], tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="holds a whole preparation"):
        entry.merge([tmp / "whole"], tmp_path / "m")
    with pytest.raises(ValueError, match="shard must be I/N with 0 <= I < N"):
        _options(entry, shard="2/2")
    shard = next(iter(json.loads((a / "manifest-0-of-2.json").read_text())["files"]))
    b2 = tmp_path / "b2"
    entry.prepare(src, b2, _options(entry, shard="1/2"), progress=False)
    (a / shard).write_bytes((a / shard).read_bytes()[:-1])  # truncated after its share finished
    with pytest.raises(ValueError, match=f"{shard}: .*truncated.*rerun the share's .*--shard 0/2"):
        entry.merge([a, b2], tmp_path / "m")
    assert not (tmp_path / "m").exists(), "a refused merge wrote its OUT"
    assert main(["prepare", "fer2013", src, str(tmp_path / "d"), "--shard", "0/0"]) == 2


@pytest.mark.slow
def test_a_share_killed_at_drawn_moments_resumes_to_the_same_share(tmp_path):
    """Share 1/3 of AFEW's small set SIGKILLed at 3 moments drawn over its uninterrupted run, each
    resumed alone: the same partial manifest, failure log and shards (records in order)."""
    from test_kill_sweep import compare_prepared

    from data_prep.store import part_files

    _, src = _source(tmp_path, "afew")
    argv = lambda out: ["-c", PREPARE, "afew", src, str(out), "1/3"]  # noqa: E731
    figures = sweep(argv, tmp_path, 3, functools.partial(compare_prepared, files=part_files("1/3")))
    print("prepare afew --shard 1/3 sweep:", figures)
    assert figures["identical"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["afew", "bu4dfe", "emotionet", "va"])
def test_every_dataset_prepared_in_three_shares_merges_to_its_unsharded_preparation(tmp_path, name):
    """Each registered dataset's small synthetic set: three shares, merged, equal the unsharded
    preparation, and the merge writes what a whole preparation writes beside its manifest
    (BU-4DFE's splits.json over every subject, EmotioNet's selection.json)."""
    entry, src = _source(tmp_path, name)
    entry.prepare(src, tmp_path / "whole", _options(entry), progress=False)
    parts = [tmp_path / f"part-{i}" for i in range(3)]
    for i, part in enumerate(parts):
        entry.prepare(src, part, _options(entry, shard=f"{i}/3"), progress=False)
    assert not any((p / "splits.json").exists() or (p / "selection.json").exists() for p in parts)
    entry.merge(parts, tmp_path / "merged")
    _assert_same(tmp_path / "merged", tmp_path / "whole")
    for extra in ("splits.json", "selection.json"):
        if (tmp_path / "whole" / extra).exists():
            assert (tmp_path / "merged" / extra).read_text() == (tmp_path / "whole" / extra).read_text()
