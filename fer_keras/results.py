"""Results tables: each thesis table with this toolkit's number beside the thesis's, row by row
(the results table of a SpeechBrain recipe, which says which config produced which number).

``fer-keras results PATH... [--thesis NNN] [--experiments DIR] [--out FILE] [--csv FILE] [--json FILE]``

Reads the ``reference`` entry of every ``metrics.json`` (evaluation, the CV runner's final
evaluation, late fusion), ``folds.json`` (the CV runner's fold means), ``fold_table.json`` (its
early-stopped folds) and ``search.json`` (a KerasTuner search's best trial) under each PATH, skipping
``eval-*`` subdirectories (extra evaluations of a run) unless a PATH is one. The experiment YAMLs
of ``--experiments`` (default ``experiments/thesis<NNN>`` with ``--thesis``) give the rows a
table should have: a row without a result is listed as "not run". The run column names the result
directory (the folds.json file itself for a CV directory's fold means). A row of several numbers
(a ``reproduces`` with ``columns``, such as thesis 001's valence and arousal CCC and MSE) is a row
of each table its columns name, with one "ours / thesis" cell and one difference per column.
Pure Python (json, yaml): no TensorFlow, so it stays fast.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

import yaml

from fer_keras import plan
from fer_keras.durable import write_atomic
from fer_keras.reference import is_percent, label, percent_row

logger = logging.getLogger(__name__)

RESULT_FILES = ("metrics.json", "folds.json", "fold_table.json", "search.json")
REFERENCE_KEYS = ("thesis", "table", "row", "metric", "value")
PER_CLASS = ("precision", "recall", "f1", "support")
CSV_HEADER = ("thesis", "table", "row", "metric", "ours", "thesis_value", "difference", "run", "status")


def _thesis(value) -> str:
    """A thesis number as a zero-padded 3-digit string ("0", 0 and "000" are "000")."""
    text = "" if value is None else str(value).strip()
    return text.zfill(3) if text.isdigit() else text


def _key(ref) -> tuple:
    return _thesis(ref["thesis"]), str(ref["table"]), str(ref["row"])


def _shown_path(path) -> str:
    """``path`` relative to the current directory when it lies below it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read(path) -> dict | None:
    """One result file as a collect() entry, or None (with a warning) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object expected, got {type(data).__name__}")
        ref = data.get("reference")
        if ref is not None:
            if not isinstance(ref, dict):
                raise ValueError(f"'reference' must be an object or null, got {type(ref).__name__}")
            missing = [k for k in REFERENCE_KEYS if k not in ref]
            if missing:
                raise ValueError(f"'reference' lacks {', '.join(missing)}")
            bad = [k for k in ("value", "ours", "difference") if not _is_number(ref.get(k), none=True)]
            if bad:
                raise ValueError(f"'reference' {', '.join(bad)} must be numbers or null")
            columns = ref.get("columns")
            if columns is not None and not (isinstance(columns, list) and all(
                    isinstance(c, dict) and isinstance(c.get("table"), str) and isinstance(c.get("label"), str)
                    and all(_is_number(c.get(k), none=True) for k in ("value", "ours", "difference"))
                    for c in columns)):
                raise ValueError("'reference' columns must be a list of {table, label, metric, value, ours, "
                                 "difference} with numbers or null")
    except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        logger.warning("%s: skipped, not a readable result file (%s)", path, err)
        return None
    path = Path(path)
    return {"path": str(path), "run": str(path.parent), "source": path.name, "reference": ref,
            "per_class": data.get("per_class") or {}, "experiment": data.get("experiment"),
            "split": data.get("split")}


def _result_files(root: Path):
    """The RESULT_FILES below ``root`` in sorted order, without eval-* subdirectories."""
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("eval-"))
        for name in RESULT_FILES:
            if name in files:
                yield Path(top) / name


def collect(paths) -> list[dict]:
    """One entry per result file under ``paths`` (directories to search, or result files): ``path``,
    ``run`` (its directory), ``source`` (file name), ``reference`` (None when the experiment names
    no thesis value), ``per_class`` (ours), ``experiment``, ``split``. A missing path raises
    FileNotFoundError; a malformed file is skipped with a warning naming it."""
    entries, seen = [], set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such result directory or file")
        for file in [path] if path.is_file() else _result_files(path):
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            entry = _read(file)
            if entry is not None:
                entries.append(entry)
    return entries


def _plan_order(root: Path) -> list[Path]:
    """The YAMLs under ``root``: those its plan runs in the plan's order (the thesis's), then the
    rest by file name; a plan that cannot be read is warned about and file name order used."""
    paths = sorted(root.rglob("*.yaml"))
    try:
        order = {name: i for i, name in enumerate(plan.run_order(root))}
    except (OSError, ValueError, yaml.YAMLError) as err:
        logger.warning("%s: rows listed in file name order (%s)", root / plan.PLAN, err)
        return paths
    return sorted(paths, key=lambda p: order.get(p.stem, len(order)) if p.parent == root else len(order))


def expected_rows(experiments_dir, thesis=None) -> list[dict]:
    """The thesis rows the experiment YAMLs under ``experiments_dir`` reproduce (in its plan's order,
    else by file name; a row two YAMLs name is listed once): ``thesis``, ``table``, ``row``,
    ``metric``, ``value`` (None when the YAML has none), ``percent``, ``config``. Only rows of
    ``thesis`` when given."""
    root = Path(experiments_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such experiments directory")
    rows, seen = [], set()
    for path in _plan_order(root):
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            logger.warning("%s: skipped, not a readable YAML (%s)", path, err)
            continue
        for ref in _references(data):
            value = ref.get("value")
            if not _is_number(value, none=True):
                logger.warning("%s: reproduces.value %r is not a number; listed without it", path, value)
                value = None
            row = {"thesis": _thesis(ref.get("thesis")), "table": str(ref["table"]), "row": str(ref["row"]),
                   "metric": ref.get("metric") or "accuracy", "value": value, "config": str(path),
                   "columns": _expected_columns(ref, path)}
            row["percent"] = is_percent(row["metric"], row["value"])
            for one in _per_table(row):
                key = _key(one)
                if (thesis is None or one["thesis"] == _thesis(thesis)) and key not in seen:
                    seen.add(key)
                    rows.append(one)
    return rows


def _expected_columns(ref, path) -> list | None:
    """A YAML's ``reproduces.columns`` as a result's reference lists them, without ours."""
    columns = ref.get("columns")
    if not isinstance(columns, list):
        return None
    out = []
    for c in columns:
        if not isinstance(c, dict) or not c.get("metric"):
            logger.warning("%s: reproduces.columns entry %r has no metric; left out", path, c)
            continue
        value = c.get("value") if _is_number(c.get("value"), none=True) else None
        out.append({"table": str(c.get("table") or ref["table"]), "row": str(c.get("row") or ref["row"]),
                    "label": str(c.get("label") or label(c["metric"])), "metric": c["metric"], "value": value,
                    "ours": None, "difference": None})
    row_percent = percent_row(out)
    for c in out:
        c["percent"] = is_percent(c["metric"], c["value"]) and (c["value"] is not None or row_percent)
    return out or None


def _per_table(reference: dict) -> list[dict]:
    """``reference`` as it is, or with columns one copy per table (and row) they name (in their
    order), each holding that table's columns."""
    columns = reference.get("columns")
    if not columns:
        return [reference]
    where = list(dict.fromkeys((c["table"], c.get("row") or reference["row"]) for c in columns))
    return [{**reference, "table": t, "row": r, "columns": [c for c in columns
                                                            if (c["table"], c.get("row") or reference["row"]) == (t, r)]}
            for t, r in where]


def _references(data) -> list[dict]:
    """The thesis rows an experiment mapping names: its ``reproduces``, then its finalisation's
    (the cross-validation's fold table), each with a table and a row."""
    if not isinstance(data, dict):
        return []
    finalisation = data.get("finalisation")
    refs = [data.get("reproduces"), finalisation.get("reproduces") if isinstance(finalisation, dict) else None]
    return [r for r in refs if isinstance(r, dict) and r.get("table") and r.get("row")]


def _is_number(value, none=False) -> bool:
    return (value is None and none) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _number(value, percent, signed=False) -> str:
    """Percentages with 2 decimals as the theses print them, other numbers with 4 significant digits."""
    if value is None:
        return ""
    sign = "+" if signed else ""
    if not percent and float(value).is_integer():  # counts (thesis 004's Tables 4 and 6) in full
        return f"{int(value):{sign}d}"
    return f"{value:{sign}.2f}" if percent else f"{value:{sign}.4g}"


def _lines(results, expected, thesis=None):
    """``({(thesis, table): [line, ...]}, unreferenced)``: the table lines in output order, each a
    dict of what one row shows, and the number of result files without a thesis reference."""
    refs = [{**r, "reference": ref} for r in results if r["reference"] for ref in _per_table(r["reference"])
            if thesis is None or _thesis(ref["thesis"]) == _thesis(thesis)]
    unreferenced = sum(1 for r in results if not r["reference"])
    by_key = {}
    for r in refs:
        by_key.setdefault(_key(r["reference"]), []).append(r)
    sections = {}
    for e in expected:
        if thesis is not None and e["thesis"] != _thesis(thesis):
            continue
        found = by_key.pop(_key(e), None)
        section = sections.setdefault(_key(e)[:2], [])
        section.extend([_line(r) for r in found] if found else [_not_run(e)])
    for r in refs:
        if _key(r["reference"]) in by_key:
            sections.setdefault(_key(r["reference"])[:2], []).append(_line(r))
    return sections, unreferenced


def _line(result) -> dict:
    ref = result["reference"]
    percent = bool(ref.get("percent"))
    run = _shown_path(result["path"] if result["source"] != "metrics.json" else result["run"])
    per_class = (ref["per_class"], result["per_class"]) if ref.get("per_class") else None
    return {"thesis": _thesis(ref["thesis"]), "table": ref["table"], "row": ref["row"],
            "metric": ref["metric"], "ours": ref.get("ours"), "value": ref["value"],
            "difference": ref.get("difference"), "percent": percent, "run": run, "status": "ok",
            "per_class": per_class, "columns": ref.get("columns")}


def _not_run(expected) -> dict:
    return {**{k: expected[k] for k in ("thesis", "table", "row", "metric", "value", "percent")},
            "ours": None, "difference": None, "run": "", "status": "not run",
            "config": _shown_path(expected["config"]), "per_class": None, "columns": expected.get("columns")}


def _columns(line) -> list[dict]:
    """The numbers of a table line: its columns, or its one metric as a column."""
    return line.get("columns") or [{"label": label(line["metric"]), "metric": line["metric"], "ours": line["ours"],
                                    "value": line["value"], "difference": line["difference"],
                                    "percent": line["percent"]}]


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_table(header, rows) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows])


def _per_class_table(line) -> list[str]:
    """class | precision (ours / thesis) | ...: the thesis's classes first, in its order."""
    theirs, ours = line["per_class"]
    rows = []
    for name in list(theirs) + [c for c in ours if c not in theirs]:
        cells = [name]
        for metric in PER_CLASS:
            t = (theirs.get(name) or {}).get(metric)
            o = (ours.get(name) or {}).get(metric)
            if metric == "support":
                cells.append(f"{'' if o is None else int(o)} / {'' if t is None else int(t)}")
            else:
                percent = isinstance(t, (int, float)) and t > 1
                o = 100 * o if percent and o is not None else o
                cells.append(f"{_number(o, percent)} / {_number(t, percent)}")
        rows.append(cells)
    header = ["class", *(f"{m} (ours / thesis)" for m in PER_CLASS)]
    return [f"### Per class: {line['row']} ({line['run']})", "", *_markdown_table(header, rows), ""]


def _summary(sections, unreferenced) -> dict:
    lines = [line for section in sections.values() for line in section]
    missing = sum(1 for line in lines if line["status"] == "not run")
    return {"rows": len(lines), "filled": len(lines) - missing, "missing": missing,
            "unreferenced": unreferenced}


def _summary_line(counts) -> str:
    return (f"{counts['rows']} rows: {counts['filled']} with a result, {counts['missing']} not run; "
            f"{counts['unreferenced']} result files without a thesis reference")


def _ours_cell(line, number) -> str:
    """Our number of ``number`` (a line or one of its columns) as a cell; "n/a" when a run has none."""
    ours = number["ours"]
    return "n/a" if line["status"] == "ok" and ours is None else _number(ours, number["percent"])


def _run_cell(line) -> str:
    return line["run"] if line["status"] == "ok" else f"not run ({line['config']})"


def _row_cells(line) -> list[str]:
    """row | metric | ours | thesis | difference | run of one table line."""
    return [line["row"], line["metric"], _ours_cell(line, line), _number(line["value"], line["percent"]),
            _number(line["difference"], line["percent"], signed=True), _run_cell(line)]


def _wide_table(lines) -> list[str]:
    """row | <column> (ours / thesis) | <column> difference ... | run: a table whose rows have columns."""
    labels = list(dict.fromkeys(c["label"] for line in lines for c in _columns(line)))
    header = ["row", *(f"{name} {part}" for name in labels for part in ("(ours / thesis)", "difference")), "run"]
    rows = []
    for line in lines:
        by_label = {c["label"]: c for c in _columns(line)}
        cells = [line["row"]]
        for name in labels:
            c = by_label.get(name)
            cells += (["", ""] if c is None else
                      [f"{_ours_cell(line, c)} / {_number(c['value'], c['percent'])}",
                       _number(c["difference"], c["percent"], signed=True)])
        rows.append([*cells, _run_cell(line)])
    return _markdown_table(header, rows)


# Theses that print a table with a row per measure and a column per model (thesis 004's Tables 3-6:
# "Total Accuracy", "Recall", ... down, VGG 16 and Inception V2 across): laid out the same way here.
MEASURES_DOWN = {"004"}


def _tall_table(lines) -> list[str]:
    """measure | <row> (ours / thesis, difference) ...: a table with a row per measure, as the thesis's."""
    labels = list(dict.fromkeys(c["label"] for line in lines for c in _columns(line)))
    header = ["measure", *(f"{line['row']} (ours / thesis, difference)" for line in lines)]
    rows = []
    for name in labels:
        cells = [name]
        for line in lines:
            c = next((c for c in _columns(line) if c["label"] == name), None)
            difference = "" if c is None or c["difference"] is None else \
                f" ({_number(c['difference'], c['percent'], signed=True)})"
            cells.append("" if c is None else f"{_ours_cell(line, c)} / {_number(c['value'], c['percent'])}{difference}")
        rows.append(cells)
    rows.append(["run", *(_run_cell(line) for line in lines)])
    return _markdown_table(header, rows)


def _render(sections, counts) -> str:
    parts = ["# Results beside the theses", "",
             "ours: this toolkit's number in the thesis's unit (n/a: no labelled video); "
             "difference: ours minus the thesis.", ""]
    for (thesis, table_name), lines in sections.items():
        parts += [f"## Thesis {thesis}: {table_name}" if thesis else f"## {table_name}", ""]
        if any(line.get("columns") for line in lines):
            parts += [*(_tall_table if thesis in MEASURES_DOWN else _wide_table)(lines), ""]
        else:
            header = ["row", "metric", "ours", "thesis", "difference", "run"]
            parts += [*_markdown_table(header, [_row_cells(line) for line in lines]), ""]
        for line in lines:
            if line["per_class"]:
                parts += _per_class_table(line)
    parts.append(_summary_line(counts))
    return "\n".join(parts) + "\n"


def table(rows, expected, thesis=None) -> str:
    """Markdown: one section per (thesis, table), expected rows in the order given (``not run`` where
    no result has them), then results of rows no YAML names; ``rows`` as collect() returns them."""
    sections, unreferenced = _lines(rows, expected, thesis)
    return _render(sections, _summary(sections, unreferenced))


def _csv(sections) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for lines in sections.values():
        for line in lines:
            for c in _columns(line):
                writer.writerow([line["thesis"], line["table"], line["row"], c["metric"],
                                 _number(c["ours"], c["percent"]), _number(c["value"], c["percent"]),
                                 _number(c["difference"], c["percent"], signed=True), line["run"],
                                 line["status"]])
    return out.getvalue()


def _json(sections, counts) -> str:
    """Every table as JSON: per table its rows, each with its numbers as columns (ours, thesis
    value, difference), its run and status."""
    tables = [{"thesis": thesis, "table": table_name, "rows": [
        {"row": line["row"], "run": line["run"], "status": line["status"], "config": line.get("config"),
         "columns": [{k: c[k] for k in ("label", "metric", "ours", "value", "difference", "percent")}
                     for c in _columns(line)]} for line in lines]}
        for (thesis, table_name), lines in sections.items()]
    return json.dumps({"tables": tables, "summary": counts}, indent=1) + "\n"


def write(paths, out=None, thesis=None, experiments=None, csv_path=None, json_path=None) -> dict:
    """Collect the results under ``paths`` and write the Markdown to ``out`` (stdout when None,
    else the summary line is printed), with ``csv_path`` every row (every column of a row) as CSV,
    with ``json_path`` every table as JSON. ``experiments``
    defaults to ``experiments/thesis<NNN>`` when ``thesis`` is given and that folder exists.
    Returns the counts: rows, filled, missing, unreferenced."""
    results = collect(paths)
    if experiments is None and thesis is not None and Path(f"experiments/thesis{_thesis(thesis)}").is_dir():
        experiments = f"experiments/thesis{_thesis(thesis)}"
    expected = expected_rows(experiments, thesis) if experiments is not None else []
    sections, unreferenced = _lines(results, expected, thesis)
    counts = _summary(sections, unreferenced)
    text = _render(sections, counts)
    if out is None:
        print(text, end="")
    else:
        write_atomic(out, text)
        print(f"{out}: {_summary_line(counts)}")
    if csv_path is not None:
        write_atomic(csv_path, _csv(sections))
    if json_path is not None:
        write_atomic(json_path, _json(sections, counts))
    return counts


def add_parser(subparsers):
    """The ``results`` subcommand's parser (the caller sets ``func``)."""
    p = subparsers.add_parser(
        "results", help="thesis tables with our numbers beside the thesis's, from result directories",
        description="Read the thesis reference of every metrics.json, folds.json, fold_table.json and search.json "
                    "under each PATH (eval-* subdirectories skipped unless named) and print one Markdown table "
                    "per thesis table: row, metric, ours, thesis, difference (ours - thesis, in the thesis's "
                    "unit), run directory. The experiment YAMLs of --experiments add the rows no result has yet, as 'not run'.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="result directories or folders to search (e.g. runs/)")
    p.add_argument("--thesis", metavar="NNN", help="only this thesis's rows (e.g. 002)")
    p.add_argument("--experiments", metavar="DIR",
                   help="experiment YAMLs giving the expected rows (default experiments/thesis<NNN> with --thesis)")
    p.add_argument("--out", metavar="FILE", help="write the Markdown here (default: print it)")
    p.add_argument("--csv", metavar="FILE", help="also write every row as CSV")
    p.add_argument("--json", metavar="FILE", help="also write every table as JSON")
    return p


def run(args) -> int:
    write(args.paths, out=args.out, thesis=args.thesis, experiments=args.experiments, csv_path=args.csv,
          json_path=args.json)
    return 0
