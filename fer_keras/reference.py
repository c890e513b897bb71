"""A thesis row beside our number: the ``reference`` entry of metrics.json and folds.json.

Evaluation, late fusion and the cross-validation runner write it, ``fer-keras results`` reads it;
it lives here, without TensorFlow or NumPy, so each of them can import it.
"""
# Metrics the theses print as percentages: a thesis value above 1 of one of them is a percent.
FRACTIONS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "sequence_accuracy")


def value_of(metrics, name):
    """The value of metric ``name`` (a key of metrics.json, or a dotted path like va.video.valence.ccc)."""
    value = metrics
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def is_percent(metric, value) -> bool:
    """Whether the thesis prints ``metric`` as a percentage (a row without a value is read as one)."""
    return str(metric).split(".")[-1] in FRACTIONS and (value is None or abs(value) > 1)


ACRONYMS = ("ccc", "mse", "rmse", "abaw", "p")  # written upper-case in a column's name


def label(metric) -> str:
    """A column's name from its metric path: its last two parts, acronyms upper-cased
    (va.frame.valence.ccc: "valence CCC")."""
    return " ".join(p.upper() if p in ACRONYMS else p for p in str(metric).split(".")[-2:])


def percent_row(columns) -> bool:
    """Whether a row of ``columns`` is in percent: as its thesis numbers are; a column the thesis
    has no number for (a baseline beside its row) takes that unit."""
    given = [c for c in columns if c.get("value") is not None]
    return any(is_percent(c["metric"], c["value"]) for c in given) if given else True


def _ours(metrics, metric, value, row_percent=True):
    """``(ours, percent, difference)`` of one thesis number (``row_percent``: the unit of its row's
    other numbers, for a column without one)."""
    ours = value_of(metrics, metric)
    percent = is_percent(metric, value) and (value is not None or row_percent)
    if ours is not None and percent:
        ours = 100 * ours
    return ours, percent, None if ours is None or value is None else ours - value


def compare(reproduces: dict, metrics: dict):
    """The thesis row ``reproduces`` (thesis, table, row, metric, value[, per_class, columns]) with
    our value of its metric from ``metrics`` in the thesis's unit and the difference (ours minus
    the thesis), or None when no thesis row is named. A row whose number the thesis lost
    (``value: null``) keeps ours, without a difference. A row of ``columns`` (config.Reference)
    gets ``columns``: per column its table, row (a comparison table's own row name, else the row's),
    label, metric, value, ours, percent and difference."""
    reproduces = reproduces or {}
    value, metric = reproduces.get("value"), reproduces.get("metric", "accuracy")
    columns = reproduces.get("columns")
    if value is None and not (reproduces.get("table") or reproduces.get("row") or columns):
        return None
    ours, percent, difference = _ours(metrics, metric, value)
    out = {"thesis": str(reproduces.get("thesis", "")), "table": reproduces.get("table", ""),
           "row": reproduces.get("row", ""), "metric": metric, "value": value, "ours": ours, "percent": percent,
           "difference": difference}
    if reproduces.get("per_class"):
        out["per_class"] = reproduces["per_class"]  # the thesis's; ours are metrics["per_class"]
    if columns:
        row_percent = percent_row(columns)
        out["columns"] = [dict(zip(("ours", "percent", "difference"),
                                   _ours(metrics, c["metric"], c.get("value"), row_percent)),
                               table=c.get("table") or out["table"], row=c.get("row") or out["row"],
                               label=c.get("label") or label(c["metric"]), metric=c["metric"], value=c.get("value"))
                          for c in columns]
    return out
