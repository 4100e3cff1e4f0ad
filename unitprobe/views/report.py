"""``report.html``: one self-contained page (figures embedded) summarizing an analysis.

The page is built from the in-memory result tables (:class:`~unitprobe.tables.Tables`), the
summary and the PNG files :func:`unitprobe.views.render.render_all` has just written; nothing
else is read back from disk. See ``docs/architecture.md``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from unitprobe._utils import atomic_write
from unitprobe.schemas import NO_ROLE, SCHEMAS
from unitprobe.tables import Tables
from unitprobe.views.render import FIGURES

__all__ = ["write_report", "render_report"]

#: Columns of the roles table shown in the report, in order.
_ROLE_COLUMNS = (
    "layer", "unit", "role", "kind", "decided_by", "confidence", "field_cosine", "transfer",
    "evidence",
)  # fmt: skip
#: Columns of the terms table shown in the report, in order.
_TERM_COLUMNS = (
    "layer", "term", "verdict", "units", "best_unit_transfer", "direction_transfer",
    "direction_specificity", "direction_p", "evidence",
)  # fmt: skip
#: Verdicts that say a term is held somewhere, and what they say.
_HELD = {
    "unit": "held by one unit", "shared": "held by several units",
    "distributed": "held along a learned direction over units", "formula": "held within units' "
    "formulas",
}  # fmt: skip

#: Figure name -> caption, in drawing order.
_CAPTIONS = {spec.name: spec.caption for spec in FIGURES}

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
code, pre { font-family: Menlo, Consolas, monospace; background: #f5f5f5; padding: 0 .25em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.2em 0 2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: .95em; margin-top: .3em; }
.muted { color: #666; font-size: .9em; }
.warning { background: #fff3cd; border: 2px solid #c0392b; padding: .6em 1em; margin: 1em 0; }
.warning li { margin: .3em 0; }
"""


def write_report(
    directory: str | Path,
    tables: Tables,
    summary: dict[str, Any],
    figures: Mapping[str, str | Path] | Sequence[str | Path],
) -> Path:
    """Write ``report.html`` into ``directory``.

    Parameters
    ----------
    directory : str or Path
        The results directory (the CSV tables are linked relative to it).
    tables : Tables
        Result tables of the analysis; the roles table is shown and every table is listed.
        A plain mapping of name to DataFrame is turned into a :class:`Tables` first.
    summary : dict
        The analysis summary (``summary.json``): task, model, metrics, versions.
    figures : mapping of name to path, or sequence of paths
        The figures to embed: what :func:`~unitprobe.views.render.render_all` returned (a
        list of files; the PNGs are embedded, named by file stem) or ``{name: png_path}``.

    Returns
    -------
    Path
        ``directory/report.html``.
    """
    directory = Path(directory)
    path = directory / "report.html"
    text = render_report(tables, summary, figures)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def render_report(
    tables: Tables,
    summary: dict[str, Any],
    figures: Mapping[str, str | Path] | Sequence[str | Path],
) -> str:
    """The report as an HTML string; figures are embedded as base64 PNG.

    Parameters are those of :func:`write_report`, less the directory.
    """
    if not isinstance(tables, Tables):
        tables = Tables(tables)
    task, metrics = summary.get("task", {}), summary.get("metrics", {})
    name = _e(task.get("name", ""))
    version = _e(summary.get("versions", {}).get("unitprobe", ""))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>unitprobe report: {name}</title><style>{_CSS}</style></head><body>",
        f"<h1>What does each unit hold? — task <code>{name}</code></h1>",
        f"<p class='muted'>unitprobe {version}, checkpoint "
        f"<code>{_e(summary.get('checkpoint', ''))}</code>, seed {summary.get('seed', '')}</p>",
        _warnings_section(summary.get("warnings") or []),
        _answer_section(tables.get("terms"), tables.get("roles"), summary.get("nulls", {})),
        _task_section(task, summary.get("model", {})),
        _performance_section(metrics, summary.get("training_metrics", {})),
        _roles_section(tables.get("roles")),
        _figures_section(_pngs(figures)),
        _files_section(tables),
        "</body></html>",
    ]
    return "\n".join(parts)


def _warnings_section(warnings: Sequence[Any]) -> str:
    """The summary's warnings, first and loud: when they hold, the roles below mean little."""
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(str(w))}</li>" for w in warnings)
    return f"<div class='warning'><strong>Warning</strong><ul>{items}</ul></div>"


def _answer_section(
    terms: pd.DataFrame | None, roles: pd.DataFrame | None, nulls: dict[str, Any]
) -> str:
    """The answer before the evidence: where each term lives, in one paragraph and a table."""
    if terms is None or terms.empty:
        return ""
    verdicts = terms["verdict"].astype(str)
    held = [
        f"<code>{_e(t)}</code> ({_HELD[v]})"
        for t, v in zip(terms["term"], verdicts, strict=True)
        if v in _HELD
    ]
    used = terms[verdicts != "unused"]
    n_roles = 0 if roles is None else int((roles["role"].astype(str) != NO_ROLE).sum())
    n_units = 0 if roles is None else len(roles)
    if held:
        answer = f"Of the {len(used)} terms the output uses, the network holds " + (
            ", ".join(held) + "."
        )
    else:
        answer = (
            f"The output uses {len(used)} terms, and none of them is held by a unit, a formula "
            "or a direction of its own (one that singles the term out and beats networks that "
            "learned nothing)."
        )
    level = nulls.get("unit_level")
    rule = (
        f"A unit holds a term when its receptive field matches it beyond a {level:g} per-unit "
        "false-positive level of untrained networks and the interchange does not contradict it; "
        f"a term is distributed when a learned direction carries it at least "
        f"{1 / max(1e-12, 1 - nulls.get('direction_specificity', 0.5)):.3g} times as much as "
        "any other term and its score beats the same search on null networks (sequential "
        f"p-value at most {nulls.get('direction_level', 0.025):g})."
        if level is not None
        else ""
    )
    cols = [c for c in _TERM_COLUMNS if c in terms.columns]
    return (
        "<h2>Where each term lives</h2>"
        f"<p><strong>{answer}</strong> {n_roles} of {n_units} units hold a term or a formula. "
        f"{_e(rule)}</p>" + _html_table(terms[cols])
    )


def _task_section(task: dict[str, Any], model: dict[str, Any]) -> str:
    relations = "".join(f"<li><code>{_e(r)}</code></li>" for r in task.get("relations", []))
    horizon = task.get("horizon", 1)
    target = "the value at the same step" if horizon == 0 else f"the value {horizon} step(s) ahead"
    return (
        "<h2>Task and model</h2>"
        f"<p>{_e(task.get('description', ''))}</p><ul>{relations}</ul>"
        f"<p>Inputs: <code>{_e(', '.join(task.get('inputs', [])))}</code>; the network predicts "
        f"{target} of <code>{_e(', '.join(task.get('predict', [])))}</code>; "
        f"{task.get('length', '?')} steps per sequence. Values are normalized with one affine map "
        "per series over the whole dataset.</p>"
        f"<p>Model: LSTM with {model.get('n_units', '?')} unit(s) per layer, "
        f"{model.get('n_layers', 1)} layer(s), linear readout.</p>"
    )


def _performance_section(metrics: dict[str, Any], training: dict[str, Any]) -> str:
    rows = [
        ("analysis sequences", metrics.get("n_sequences")),
        ("steps per sequence", metrics.get("n_steps")),
    ]
    rows += [("model MSE (normalized units²)", metrics.get("mse"))]
    rows += [
        (f"model MSE, output {k}", v) for k, v in (metrics.get("mse_per_output") or {}).items()
    ]
    rows += [
        (
            f"baseline MSE ({metrics.get('baseline', 'repeat the last value')})",
            metrics.get("baseline_mse"),
        )
    ]
    ratio = metrics.get("mse_ratio")
    rows += [
        ("model / baseline", f"{100 * ratio:.3g} %" if isinstance(ratio, (int, float)) else "n/a")
    ]
    if training.get("val_mse") is not None:
        rows += [("validation MSE at training", training.get("val_mse"))]
    body = "".join(f"<tr><th>{_e(k)}</th><td class='num'>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<h2>Performance</h2><table>{body}</table>"


def _roles_section(roles: pd.DataFrame | None) -> str:
    if roles is None:
        return ""
    cols = [c for c in _ROLE_COLUMNS if c in roles.columns]
    return (
        "<h2>Unit → role</h2><p>Each unit's role: the term or formula its receptive field reads "
        "beyond the null of untrained networks, confirmed by the interchange (patching the "
        "unit moves the output for that term, measurably and more than for any other), or by "
        "the receptive field alone where the interchange cannot tell, with a confidence in "
        f"[0, 1]. <code>{NO_ROLE}</code>: no term or formula above the null, or one the "
        "interchange contradicts.</p>" + _html_table(roles[cols])
    )


def _pngs(figures: Mapping[str, str | Path] | Sequence[str | Path]) -> dict[str, Path]:
    """Figure name -> PNG file, in :data:`FIGURES` order (other names after, by name)."""
    if isinstance(figures, Mapping):
        named = [(str(k), Path(v)) for k, v in figures.items()]
    else:
        named = [(Path(p).stem, Path(p)) for p in figures]
    pngs = {k: p for k, p in named if p.suffix.lower() == ".png"}
    order = {k: i for i, k in enumerate(_CAPTIONS)}
    return dict(sorted(pngs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _figures_section(pngs: dict[str, Path]) -> str:
    items = []
    for stem, png in pngs.items():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        caption = _CAPTIONS.get(stem, stem.replace("_", " "))
        items.append(
            f"<figure id='{_e(stem)}'><img alt='{_e(caption)}' "
            f"src='data:image/png;base64,{data}'>"
            f"<figcaption><b>{_e(stem)}</b>: {_e(caption)}</figcaption></figure>"
        )
    return "<h2>Figures</h2>" + ("".join(items) or "<p>No figures were rendered.</p>")


def _files_section(tables: Tables) -> str:
    items = "".join(
        f"<li><a href='{_e(name)}.csv'>{_e(name)}.csv</a>: one row per {_e(SCHEMAS[name].row)}</li>"
        for name in SCHEMAS
        if name in tables
    )
    return f"<h2>Tables</h2><p>Tidy CSV files beside this report:</p><ul>{items}</ul>"


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for record in df.itertuples(index=False):
        cells = "".join(
            f"<td class='num'>{_fmt(v)}</td>" if isinstance(v, float) else f"<td>{_e(v)}</td>"
            for v in record
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4g}"
    return _e(value)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))
