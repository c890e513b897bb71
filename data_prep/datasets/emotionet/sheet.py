"""EmotioNet's label sheet, read as distributed: one row per image, its URL and then 60 AU columns
(AUs 1 to 60 in ascending order) holding 1 (active), 0 (inactive) or 999 (occluded or not annotated).

The sheet comes as .xlsx (read with openpyxl, which thesis 004 considered and did not use) or as
a CSV converted from it, with or without a header row. The thesis's CSV broke on the URLs that hold
commas (fewer than 15): unquoted, they spill into the AU columns and shift every label, so it
deleted the commas, and with them the URLs' identity. Here a CSV row with more than 61 fields whose
last 60 are valid labels is read as one URL (the leading fields joined by their commas), and a
quoted URL is read whole by the csv module anyway. A row that is still wrong (column count, a value
outside {0, 1, 999}, an empty URL) is reported with its row number and skipped; a URL listed twice
is reported once and kept once (its first row).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np

from fer_keras.classes import EMOTIONET_AUS

VALUES = (0, 1, 999)
COLUMNS = 1 + len(EMOTIONET_AUS)


@dataclass
class SheetRow:
    url: str
    aus: np.ndarray  # (60,) int16 of 0, 1, 999 in AU order 1..60
    row: int  # 1-based row of the sheet (the header, when there is one, is row 1)


@dataclass
class Sheet:
    path: str
    rows: list[SheetRow] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)  # {"row", "url", "problem"} of each skipped row
    duplicates: list[dict] = field(default_factory=list)  # {"url", "rows"}: kept at rows[0]
    header: bool = False
    comma_urls: int = 0  # unquoted URLs with commas read back whole

    def report(self) -> dict:
        """What was read, for `sheet_report.json` beside the download."""
        return {"sheet": self.path, "header": self.header, "rows_kept": len(self.rows),
                "rows_skipped": len(self.problems), "duplicate_urls": len(self.duplicates),
                "unquoted_comma_urls": self.comma_urls, "problems": self.problems, "duplicates": self.duplicates}


def _value(cell):
    """A label cell as an int, or None: xlsx gives ints or floats, CSV gives text."""
    if isinstance(cell, bool) or cell is None:
        return None
    if isinstance(cell, (int, float)):
        return int(cell) if float(cell).is_integer() else None
    text = str(cell).strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _labels(cells) -> tuple[np.ndarray | None, str | None]:
    """(labels, None) or (None, the first problem) of the 60 AU cells."""
    values = [_value(c) for c in cells]
    for au, (cell, value) in zip(EMOTIONET_AUS, zip(cells, values)):
        if value not in VALUES:
            return None, f"AU {au} is {str(cell)[:20]!r}, expected 0, 1 or 999"
    return np.array(values, np.int16), None


def _is_header(cells) -> bool:
    """A first row whose label columns are not labels (AU names, 'AU1', ...) is a header."""
    return len(cells) >= COLUMNS and "://" not in str(cells[0] or "") and \
        all(_value(c) is None for c in cells[1:COLUMNS] if c not in (None, ""))


def _cells_csv(path):
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        yield from csv.reader(f)


def _cells_xlsx(path):
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises zipfile, KeyError and its own errors for a damaged file
        raise ValueError(f"{path}: not a readable .xlsx workbook ({type(err).__name__}: {err})") from None
    try:
        for values in book.worksheets[0].iter_rows(values_only=True):
            cells = list(values)
            while cells and cells[-1] is None:  # openpyxl pads rows to the sheet's widest
                cells.pop()
            yield cells
    finally:
        book.close()


def read_sheet(path) -> Sheet:
    """Read the sheet at `path` (.xlsx or .csv); bad rows are reported in `problems`, not raised."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (expected EmotioNet's label sheet, .xlsx or .csv)")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".xlsx", ".csv"):
        raise ValueError(f"{path}: unknown sheet type {ext or '(no extension)'!r}; expected .xlsx or .csv")
    sheet, seen = Sheet(path), {}
    cells_of = _cells_xlsx if ext == ".xlsx" else _cells_csv
    for number, cells in enumerate(cells_of(path), start=1):
        if not any(c not in (None, "") for c in cells):
            continue  # blank lines (a trailing newline, xlsx's empty rows)
        if number == 1 and _is_header(cells):
            sheet.header = True
            continue
        url = str(cells[0]).strip() if cells[0] is not None else ""

        def skip(problem):
            sheet.problems.append({"row": number, "url": url[:200], "problem": problem})

        if len(cells) > COLUMNS and ext == ".csv":
            labels, _ = _labels(cells[-len(EMOTIONET_AUS):])
            if labels is not None:  # an unquoted URL with commas: its pieces are the leading fields
                url = ",".join(cells[:len(cells) - len(EMOTIONET_AUS)]).strip()
                sheet.comma_urls += 1
                cells = [url, *cells[-len(EMOTIONET_AUS):]]
        if len(cells) != COLUMNS:
            skip(f"{len(cells)} columns, expected {COLUMNS} (the URL, then AUs 1 to 60)")
            continue
        if not url:
            skip("empty URL")
            continue
        labels, problem = _labels(cells[1:])
        if problem:
            skip(problem)
            continue
        if url in seen:
            first = seen[url]
            entry = next((d for d in sheet.duplicates if d["url"] == url), None)
            if entry is None:
                sheet.duplicates.append({"url": url, "rows": [first.row, number],
                                         "same_labels": bool(np.array_equal(first.aus, labels))})
            else:
                entry["rows"].append(number)
                entry["same_labels"] &= bool(np.array_equal(first.aus, labels))
            continue
        seen[url] = SheetRow(url, labels, number)
        sheet.rows.append(seen[url])
    return sheet
