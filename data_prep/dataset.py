"""The entry a dataset package registers (``DATASET = Dataset(...)``): what the dataset is and how
it is prepared and synthesised. Its own module so that the packages and the registry that lists
them (data_prep/registry.py) import it, and not each other.
"""
from __future__ import annotations

import importlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from data_prep import options as declared_options
from fer_keras import storage


@dataclass(frozen=True)
class Synthetic:
    """A synthetic-data generator: what ``fer-keras synth NAME`` runs."""

    module: str  # holds synth(out, spec) -> summary line
    spec: type  # its options, declared as data_prep.options describes
    summary: str
    description: str = ""
    target: str = "folder"  # what OUT is: a folder or a single file (FER2013's CSV)
    small: dict = field(default_factory=dict)  # spec values of a set that writes in seconds (tests)

    def make_spec(self, values: dict):
        """The spec from option names (a plan's ``synth`` mapping); unknown names and bad values are refused."""
        return declared_options.build(self.spec, values)

    def synth(self, out, spec=None) -> str:
        """Write the synthetic set to ``out``; returns what was written, in one line.

        A new ``out`` appears whole or not at all: the set is written in ``.partial-<name>`` beside
        it and moved into place when complete (``out`` itself last), so a kill never leaves a
        partial set that a rerun would take for a finished one; a leftover is written anew."""
        write = importlib.import_module(self.module).synth
        final = Path(out)
        if final.exists():  # the user's own folder: written into, as asked
            return write(str(final), spec or self.spec())
        work = final.parent / f".partial-{final.name}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        summary = write(str(work / final.name), spec or self.spec())
        for item in sorted(work.iterdir(), key=lambda p: p.name == final.name):
            os.replace(item, final.parent / item.name)
        work.rmdir()
        return summary.replace(str(work / final.name), str(final))


@dataclass(frozen=True)
class Dataset:
    """One dataset: its classes and labels, its source layout and how it is prepared."""

    name: str
    package: str  # data_prep.datasets.<name>
    summary: str  # one line, for `fer-keras prepare --help`
    description: str  # for `fer-keras prepare NAME --help`
    classes: tuple  # its class order, from fer_keras.classes
    labels: tuple  # label kinds its records carry: category, va, au
    options: type  # its Options dataclass (data_prep.options declarations)
    synthetic: Synthetic
    source: str = "folder"  # "folder" (a dataset root) or "file" (one file, e.g. fer2013.csv)
    subjects: bool = False  # its manifest records each video's subject (k-fold by subject works)
    synthetic_source: str = "synthetic_source"  # where `prepare NAME OUT` writes a synthetic source under OUT
    small: dict = field(default_factory=dict)  # options that prepare the small synthetic set in seconds (tests)
    download: str | None = None  # module with fetch(source, out, DownloadOptions, progress): `fer-keras download`

    @property
    def source_metavar(self) -> str:
        return "CSV" if self.source == "file" else "SRC"

    def prepare(self, src, out, opts=None, progress: bool = True) -> dict:
        """Prepare ``src`` into ``out`` (resumable); returns the manifest (a share's, with ``opts.shard``,
        marked complete once its run went through all its items)."""
        opts = opts if opts is not None else self.options()
        storage.local_only(src, f"reading {self.name}'s source (decoders, face detection and openSMILE open "
                                "files themselves; OUT may be remote)")
        manifest = self._layout().prepare(src, out, opts, progress=progress)
        if opts.shard:
            from data_prep.store import complete_share

            manifest = complete_share(out, opts.shard)
        return manifest

    def merge(self, parts, out) -> dict:
        """Join the shares in the ``parts`` folders into ``out`` (data_prep/merge.py) and write what a
        whole preparation of this dataset writes beside its manifest; returns the merged manifest."""
        from data_prep.merge import merge

        manifest = merge(parts, out)
        finish = getattr(self._layout(), "finish", None)
        if finish is not None:
            finish(out, manifest)
        return manifest

    def _layout(self):
        return importlib.import_module(f"{self.package}.layout")

    def fetch(self, source, out, opts=None, progress: bool = True, connect_to=None) -> dict:
        """Download what ``source`` lists into ``out`` (resumable); returns the run's summary."""
        if self.download is None:
            raise ValueError(f"dataset {self.name!r} has nothing to download (it is distributed as files)")
        from data_prep.download import DownloadOptions

        storage.local_only(out, "a download folder (images written through the OS, then prepared from it)")

        module = importlib.import_module(self.download)
        return module.fetch(source, out, opts or DownloadOptions(), progress=progress, connect_to=connect_to)

    def make_options(self, values: dict):
        """The options from option names (a plan's ``prepare`` mapping); unknown names and bad values are refused."""
        return declared_options.build(self.options, values)
