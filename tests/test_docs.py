"""The READMEs name only what exists: every registered dataset has its README, and every `make`
target, `fer-keras` command and relative link written in a README of the repository is real.

Fast and without TensorFlow: the dataset registry and the command-line parser load none.
Commands are read from code (fenced blocks and inline code spans), links from the prose.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from data_prep.registry import DATASETS, SYNTHETIC
from fer_keras.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
# Folders that hold no documentation of the project (environments, outputs, caches).
SKIPPED_DIRS = {".git", ".venv", "venv", "data", "runs", "build", "dist", "node_modules", "__pycache__"}
# The READMEs the top README sends a reader to; each must be there.
EXPECTED = ["README.md", "fer_keras/README.md", "fer_keras/models/README.md", "fer_keras/bench/README.md",
            "data_prep/bench/README.md"]
# Pattern rules whose stem must name a registry entry (any other pattern rule takes any stem).
PATTERN_STEMS = {"prepare-%": set(DATASETS), "synth-%": set(SYNTHETIC)}
# A stem written as a placeholder documents the pattern rule itself (`make prepare-NAME`).
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[\w-]+>)$")

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HEADING = re.compile(r"^[ \t]{0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M)
MAKE = re.compile(r"(?<![\w./$-])make(?![\w-])[ \t]+([^\n]*)")
FER_KERAS = re.compile(r"(?<![\w.-])fer-keras(?![\w-])[ \t\n]+([^\s`|;&#]+)")
WORD = re.compile(r"[ \t\n]+([^\s`|;&#]+)")
QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


def _readmes() -> list[str]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")
                         and not d.endswith(".egg-info"))
        if "README.md" in files:
            found.append(Path(folder, "README.md").relative_to(ROOT).as_posix())
    return sorted(found)


READMES = _readmes()


def _text(readme: str) -> str:
    return (ROOT / readme).read_text(encoding="utf-8")


def _code(text: str) -> list[str]:
    """The code of a Markdown text: its fenced blocks, then its inline code spans."""
    blocks = [m.group(2) for m in FENCE.finditer(text)]
    return blocks + [m.group(2) for m in SPAN.finditer(FENCE.sub("", text))]


def _prose(text: str) -> str:
    """The text without its code (a link written inside code is no link)."""
    return SPAN.sub("", FENCE.sub("", text))


def _snippet(code: str, start: int) -> str:
    """The line of ``code`` around ``start``, for a failure message."""
    begin = code.rfind("\n", 0, start) + 1
    end = code.find("\n", start)
    return " ".join(code[begin:None if end < 0 else end].split())


# --- the Makefile ------------------------------------------------------------------------------

def _makefile_targets() -> tuple[set[str], list[str]]:
    """(explicit targets, pattern targets) of the Makefile's rules."""
    explicit, patterns = set(), []
    for line in (ROOT / "Makefile").read_text().splitlines():
        if not line.strip() or line.startswith(("\t", "#")):
            continue
        rule = re.match(r"^([^:=#\t][^:=#]*?)\s*::?(?!=)", line)  # `a b: prereqs`, not `X := value`
        if rule is None:
            continue
        for name in rule.group(1).split():
            if "$" in name or name.startswith("."):  # a computed file target, or .PHONY and friends
                continue
            if "%" in name:
                patterns.append(name)
            else:
                explicit.add(name)
    return explicit, patterns


def _is_make_target(target: str, explicit: set[str], patterns: list[str]) -> bool:
    if target in explicit:
        return True
    for pattern in patterns:
        prefix, _, suffix = pattern.partition("%")
        if len(target) > len(prefix) + len(suffix) and target.startswith(prefix) and target.endswith(suffix):
            stem = target[len(prefix):len(target) - len(suffix)]
            allowed = PATTERN_STEMS.get(pattern)
            if allowed is None or stem in allowed or PLACEHOLDER.match(stem):
                return True
    return False


def _make_targets_named(code: str):
    """(target, line) of every `make TARGET ...` in a piece of code: the first word after `make`
    that is not a variable (X=1), an option or an [optional] part, quoted values (ARGS="--a b")
    removed first and the command cut at a shell separator or a comment."""
    for match in MAKE.finditer(code):
        command = re.split(r"[;&|#]", QUOTED.sub('""', match.group(1)), maxsplit=1)[0]
        for word in command.split():
            if word.startswith(("-", "[", "(", "$", "<", "\\")) or "=" in word or word == "...":
                continue
            yield word.strip("`'\"").rstrip(".,:)"), _snippet(code, match.start())
            break


# --- the command line --------------------------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


COMMANDS = _subcommands(build_parser())


def _commands_named(code: str):
    """(command, sub or None, line) of every `fer-keras COMMAND [SUB]` in a piece of code."""
    for match in FER_KERAS.finditer(code):
        command, following = match.group(1), WORD.match(code, match.end())
        sub = following.group(1) if following else None
        if command.startswith("-"):  # fer-keras --help
            continue
        yield command, sub, _snippet(code, match.start())


# --- links and headings ------------------------------------------------------------------------

def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for match in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(text: str) -> list[str]:
    prose = _prose(text)
    return [m.group(1) for m in LINK.finditer(prose)] + [m.group(1) for m in REFERENCE_LINK.finditer(prose)]


# --- the tests ---------------------------------------------------------------------------------

def test_the_readmes_are_found():
    missing = [readme for readme in EXPECTED if readme not in READMES]
    assert not missing, f"READMEs missing (or in a skipped folder): {missing}; found: {READMES}"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_has_a_readme(name):
    folder = ROOT.joinpath(*DATASETS[name].package.split("."))
    readme = folder / "README.md"
    rel = readme.relative_to(ROOT).as_posix()
    assert readme.is_file(), f"dataset {name!r} (registered in data_prep/registry.py) has no {rel}"
    assert f"fer-keras prepare {name}" in readme.read_text(encoding="utf-8"), (
        f"{rel} never names `fer-keras prepare {name}`")
    top_links = {link.partition("#")[0].rstrip("/") for link in _links(_text("README.md"))}
    assert rel in top_links or rel.rsplit("/", 1)[0] in top_links, (
        f"README.md does not link to {rel} (its datasets table)")


@pytest.mark.parametrize("readme", READMES)
def test_make_targets_exist(readme):
    explicit, patterns = _makefile_targets()
    assert explicit, "no target found in the Makefile"
    bad = [f"`make {target}` in: {line}" for code in _code(_text(readme))
           for target, line in _make_targets_named(code) if not _is_make_target(target, explicit, patterns)]
    assert not bad, (f"{readme} names make targets the Makefile does not have (explicit: "
                     f"{', '.join(sorted(explicit))}; patterns: {', '.join(patterns)}, "
                     f"prepare-% for {', '.join(DATASETS)}, synth-% for {', '.join(SYNTHETIC)}):\n  "
                     + "\n  ".join(bad))


@pytest.mark.parametrize("readme", READMES)
def test_fer_keras_commands_exist(readme):
    bad = []
    for code in _code(_text(readme)):
        for command, sub, line in _commands_named(code):
            if command not in COMMANDS:
                bad.append(f"`fer-keras {command}` (no such command) in: {line}")
                continue
            subs = _subcommands(COMMANDS[command])
            if subs and sub is not None and not sub.startswith("-") and not PLACEHOLDER.match(sub) \
                    and sub not in subs:
                bad.append(f"`fer-keras {command} {sub}` (known: {', '.join(subs)}) in: {line}")
    assert not bad, (f"{readme} names fer-keras commands build_parser() does not have "
                     f"(commands: {', '.join(COMMANDS)}):\n  " + "\n  ".join(bad))


@pytest.mark.parametrize("readme", READMES)
def test_relative_links_resolve(readme):
    here = (ROOT / readme).parent
    bad = []
    for target in _links(_text(readme)):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        file = (here / path).resolve() if path else ROOT / readme
        if not file.exists():
            bad.append(f"({target}): {Path(os.path.relpath(file, ROOT)).as_posix()} does not exist")
        elif anchor and file.is_file() and file.suffix == ".md" and anchor not in _anchors(file):
            bad.append(f"({target}): no heading with the anchor #{anchor} in "
                       f"{Path(os.path.relpath(file, ROOT)).as_posix()}")
    assert not bad, f"{readme} has broken relative links:\n  " + "\n  ".join(bad)
