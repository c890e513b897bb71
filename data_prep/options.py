"""A preparation's options, declared once: on its dataclass, each field carries its type, default,
allowed values and help, and everything else is derived from that declaration: the up-front
checks (``check``), the ``fer-keras prepare NAME`` / ``synth NAME`` flags and their ``--help``
(``add_arguments``), the values a parsed command line gives (``from_args``) and the check of a
thesis plan's option names (``field_names``).

The run settings that every preparation shares (``-j``, ``--shard-size``, ``--verify``,
``--shard``, ``--seed``) are declared once here, in ``SHARED``; an Options class has them as plain fields
with its own default. Nested option groups (BU-4DFE's tracking and trimming) are dataclass
fields whose own fields become flags of the same command.

Kept free of TensorFlow: the command line imports it to build its parser.
"""
from __future__ import annotations

import argparse
import dataclasses
import numbers
import types
import typing
from dataclasses import dataclass, field

from data_prep import share


@dataclass(frozen=True)
class Option:
    """What a field declares beyond its type and default."""

    help: str
    flag: str | None = None  # the command-line flag; default --field-name
    choices: tuple | None = None
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    unit: str = ""  # shown after the bounds in a refusal ("px", "Hz")
    parse: typing.Callable | None = None  # flag text -> value (lists given as "a,b,c")
    metavar: str | None = None
    nargs: int | None = None
    cli: bool = True  # False: an option of the Python API only (e.g. a mapping)
    validate: typing.Callable | None = None  # raises ValueError for a value of the right type that cannot work


def option(default=dataclasses.MISSING, help: str = "", *, factory=dataclasses.MISSING, **declared):
    """A dataclass field declared as an option (see ``Option`` for ``declared``)."""
    meta = {"option": Option(help=help, **declared)}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# The run settings every preparation shares: how fast it runs and how it resumes, never what it writes.
SHARED = {
    "jobs": Option("parallel processes: videos prepared at once (FER2013: images resized and encoded)", flag="-j", low=1),
    "shard_size": Option("records per TFRecord shard", low=1),
    "verify": Option("on a rerun, check the kept shards' checksums and records too (sizes are always "
                     "checked); the videos of a missing or damaged shard are prepared again"),
    "shard": Option("I/N: prepare only this worker's share of the items (a stable hash of each item's key, "
                    "0 <= I < N), as manifest-I-of-N.json, failures-I-of-N.jsonl and shards named I-of-N, in OUT "
                    "shared by every worker or in one OUT each; `fer-keras merge` (or a final run without "
                    "--shard into the shared OUT) joins them", metavar="I/N", validate=share.parse),
    "seed": Option("seed of the dataset's random choices (BU-4DFE's augmentations) and of the synthetic set "
                   "written when the source is omitted"),
}
RUN_SETTINGS = ("jobs", "shard_size", "verify", "shard")  # never part of what a preparation writes


def declared(cls) -> list[tuple[str, dataclasses.Field, Option | None]]:
    """(name, field, declaration) of every field; SHARED fields take the shared declaration."""
    return [(f.name, f, f.metadata.get("option") or SHARED.get(f.name)) for f in dataclasses.fields(cls)]


def _types(cls) -> dict:
    return typing.get_type_hints(cls)


def _base(kind):
    """int for ``int``, (float, None) for ``float | None``, ..."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = typing.get_args(kind)
        return tuple(a for a in args if a is not type(None)), type(None) in args
    return (typing.get_origin(kind) or kind,), False


def check(obj, prefix: str) -> None:
    """Refuse, naming the option, every declared value of the wrong type, outside its bounds or
    not one of its choices (``prefix`` names the option group: "prepare option", "track option")."""
    types = _types(type(obj))
    for name, f, opt in declared(type(obj)):
        value = getattr(obj, name)
        bases, optional = _base(types[name])
        if value is None and optional:
            continue
        if dataclasses.is_dataclass(bases[0]) or opt is None:
            continue

        def refuse(expected):
            raise ValueError(f"{prefix} {name} must be {expected}, got {value!r}")

        if bool in bases:
            if not isinstance(value, bool):
                refuse("true or false")
        elif int in bases and float not in bases:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                refuse(f"an integer{_bounds(opt)}")
        elif float in bases:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                refuse(f"a number{_bounds(opt)}")
        elif str in bases and not isinstance(value, str):
            refuse("a string")
        if opt.choices is not None and value not in opt.choices:
            refuse(f"one of {', '.join(map(str, opt.choices))}")
        if (opt.low is not None and value < opt.low) or (opt.high is not None and value > opt.high):
            refuse(_bounds(opt).strip())
        if opt.validate is not None:
            try:
                opt.validate(value)
            except ValueError as err:
                raise ValueError(f"{prefix} {name} {err}") from None


def _bounds(opt: Option) -> str:
    unit = f" {opt.unit}" if opt.unit else ""
    if opt.low is not None and opt.high is not None:
        return f" {opt.low:g}..{opt.high:g}{unit}"
    if opt.low is not None:
        return f" >= {opt.low:g}{unit}"
    if opt.high is not None:
        return f" <= {opt.high:g}{unit}"
    return ""


def _flag(name: str, opt: Option) -> str:
    return opt.flag or "--" + name.replace("_", "-")


def _leaves(cls, path=()):
    """(path of field names, field, declaration, type) of every option, nested groups flattened."""
    types = _types(cls)
    for name, f, opt in declared(cls):
        kind = types[name]
        if dataclasses.is_dataclass(kind):
            yield from _leaves(kind, path + (name,))
        elif opt is not None and opt.cli:
            yield path + (name,), f, opt, kind


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def add_arguments(parser: argparse.ArgumentParser, cls, shared=()) -> None:
    """One flag per option of ``cls`` (nested groups included), its help ending in the default,
    plus the ``shared`` run settings ``cls`` lacks (``--seed`` of a synthetic source). Flags left
    out of a command line are absent from its namespace, so the class's defaults (and checks) decide."""
    extra = [((name,), field(default=0), SHARED[name], int) for name in shared if name not in field_names(cls)]
    for path, f, opt, kind in [*_leaves(cls), *extra]:
        flag, dest = _flag(path[-1], opt), "opt:" + ".".join(path)
        flags = ("-j", "--jobs") if flag == "-j" else (flag,)
        bases, _ = _base(kind)
        default = _default(f)
        common = dict(dest=dest, default=argparse.SUPPRESS)
        if bool in bases:
            action = "store_false" if flag.startswith("--no-") else "store_true"
            parser.add_argument(*flags, action=action, help=opt.help, **common)
            continue
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        text = f"{opt.help} (default {shown})" if default is not None else opt.help
        parser.add_argument(*flags, type=opt.parse or bases[0], choices=opt.choices, nargs=opt.nargs,
                            metavar=opt.metavar or (None if opt.choices else path[-1].upper()), help=text, **common)


def from_args(cls, args: argparse.Namespace, only=None):
    """An instance of ``cls`` from the flags given (``add_arguments``), those of its fields only
    (and of ``only``, when named); it checks itself, so a bad value is refused before anything
    is read or written."""
    names = field_names(cls) & set(only or field_names(cls))  # afew's --seed is its synthetic source's
    return build(cls, {k[4:]: v for k, v in vars(args).items() if k.startswith("opt:") and k[4:] in names})


def build(cls, values: dict):
    """``cls`` from flat option names (nested groups' fields by their own names or dotted paths)."""
    if not isinstance(values, dict):
        raise ValueError(f"options must map option names to values, got {values!r}")
    flat = {path[-1]: path for path, *_ in _leaves(cls)} | {".".join(p): p for p, *_ in _leaves(cls)}
    top = {f.name for f in dataclasses.fields(cls)}
    nested: dict = {}
    for key, value in values.items():
        path = (key,) if key in top else flat.get(key)
        if path is None:
            known = sorted(n for n in field_names(cls) if "." not in n)
            raise ValueError(f"unknown option {key!r}; known: {', '.join(known)}")
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return _make(cls, nested)


def _make(cls, values: dict):
    types = _types(cls)
    return cls(**{k: _make(types[k], v) if dataclasses.is_dataclass(types[k]) and isinstance(v, dict) else v
                  for k, v in values.items()})


def field_names(cls) -> set[str]:
    """Every name ``build`` accepts: top-level fields and the fields of nested groups, by their own
    names or dotted paths (``trim.threshold``)."""
    leaves = [path for path, *_ in _leaves(cls)]
    return {f.name for f in dataclasses.fields(cls)} | {p[-1] for p in leaves} | {".".join(p) for p in leaves}
