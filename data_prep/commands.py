"""The dataset commands of `fer-keras` (fer_keras/cli.py holds the rest): `synth`, `prepare`,
`merge` and `download`, generated from the dataset registry so that a new dataset needs no line here.

Importing it loads no TensorFlow (the registry and the option declarations are light): the command
line builds its parser from it at every start.
"""
from __future__ import annotations

import json
import os

from data_prep import download, options
from data_prep.download import DownloadOptions, parse_connect_to
from data_prep.registry import DATASETS, SYNTHETIC, dataset


def add_parsers(sub, wrap) -> None:
    """`fer-keras synth NAME`, `prepare NAME` and `download NAME`, one per registered dataset (and
    generator), their flags generated from the options each declares (data_prep/options.py), and
    `merge`; ``wrap`` turns a command's expected errors into one line and exit code 2."""
    synth = sub.add_parser("synth", help="write a synthetic dataset in a real dataset layout")
    synth_sub = synth.add_subparsers(dest="dataset", required=True)
    for name, generator in SYNTHETIC.items():
        s = synth_sub.add_parser(name, help=generator.summary, description=generator.description or None)
        s.add_argument("out", metavar="OUT" + (".csv" if generator.target == "file" else ""),
                       help="CSV file to write" if generator.target == "file" else "directory to write")
        options.add_arguments(s, generator.spec)
        s.set_defaults(func=wrap(_synth))

    prep = sub.add_parser("prepare", help="detect, align and shard a dataset")
    prep_sub = prep.add_subparsers(dest="dataset", required=True)
    for name, entry in DATASETS.items():
        src = entry.source_metavar
        p = prep_sub.add_parser(name, help=entry.summary, description=entry.description,
                                usage=f"fer-keras prepare {name} [options] [{src}] OUT")
        p.add_argument("paths", nargs="+", metavar=f"[{src}] OUT",
                       help=f"the dataset's {'file' if entry.source == 'file' else 'root folder'} and the output dir")
        options.add_arguments(p, entry.options, shared=("seed",))
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=wrap(_prepare))

    m = sub.add_parser("merge", help="join the shares of a preparation made with --shard I/N into one dataset",
                       description="Join the shares prepared with `fer-keras prepare NAME --shard I/N` (their "
                       "manifest-I-of-N.json, failures-I-of-N.jsonl and shards, in one shared OUT or one folder "
                       "each) into OUT as one prepared dataset. Every share must be present and finished, all "
                       "prepared with the same options; rerun it after a kill to finish it.")
    m.add_argument("parts", nargs="+", metavar="PART", help="a folder holding one or more shares (may be OUT itself)")
    m.add_argument("out", metavar="OUT", help="the merged dataset's folder")
    m.set_defaults(func=wrap(_merge))

    down = sub.add_parser("download", help="fetch a dataset distributed as a URL list (the only network step)")
    down_sub = down.add_subparsers(dest="dataset", required=True)
    for name in (name for name, entry in DATASETS.items() if entry.download):
        d = down_sub.add_parser(name, help=f"download {name}'s images from its URL sheet (resumable)",
                                description=download.DESCRIPTION)
        d.add_argument("source", metavar="SHEET", help="the label sheet (.xlsx or .csv)")
        d.add_argument("out", metavar="OUT", help="download folder (index.jsonl, images/, labels.csv)")
        options.add_arguments(d, DownloadOptions)
        d.add_argument("--connect-to", action="append", metavar="HOST:PORT:ADDRESS:PORT", help=download.CONNECT_TO)
        d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        d.set_defaults(func=wrap(_download))


def _synth(args) -> int:
    generator = SYNTHETIC[args.dataset]
    print(generator.synth(args.out, options.from_args(generator.spec, args)))
    return 0


def _prepare(args) -> int:
    entry = dataset(args.dataset)
    if len(args.paths) > 2:
        raise ValueError(f"usage: fer-keras prepare {entry.name} [{entry.source_metavar}] OUT")
    src, out = (None, args.paths[0]) if len(args.paths) == 1 else args.paths
    opts = options.from_args(entry.options, args)  # every option is checked before anything is read or written
    if src is None:
        src = os.path.join(out, entry.synthetic_source)
        if not os.path.exists(src):
            print(f"no {entry.source_metavar} given: writing a synthetic {entry.name} set to {src}")
            entry.synthetic.synth(src, options.from_args(entry.synthetic.spec, args, only=("seed", "layout")))
    manifest = entry.prepare(src, out, opts, progress=not args.quiet)
    _report(entry, manifest, out, opts.shard)
    return 0


def _merge(args) -> int:
    from data_prep.merge import dataset_of

    entry = dataset(dataset_of(args.parts))
    _report(entry, entry.merge(args.parts, args.out), args.out)
    return 0


def _report(entry, manifest: dict, out, shard=None) -> None:
    """What a preparation (or a share of one, or a merge) wrote: counts per split and its files."""
    from data_prep.store import part_files

    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "shards"} for k, v in manifest["splits"].items()}))
    manifest_file, failures_file = part_files(shard)
    print(f"manifest: {os.path.join(out, manifest_file)}; failures: {os.path.join(out, failures_file)}")
    if shard:
        print(f"share {shard} done; `fer-keras merge` joins the shares once all have run")
    elif entry.subjects:
        print(f"split file: {os.path.join(out, 'splits.json')}")


def _download(args) -> int:
    opts = options.from_args(DownloadOptions, args)  # every option is checked before the network is touched
    connect_to = dict(parse_connect_to(text) for text in args.connect_to or ())
    summary = dataset(args.dataset).fetch(args.source, args.out, opts, progress=not args.quiet, connect_to=connect_to)
    return 0 if summary.get("ok", 0) or not summary.get("total", 0) else 1
