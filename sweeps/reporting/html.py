"""HTML and file primitives of the sweep report (``sweeps/reporting/page.py``): the page's CSS,
cell formatting, tables, notes, embedded images, CSV and JSON-safe values."""

from __future__ import annotations

import base64
import csv
import html
import math
from collections import Counter
from pathlib import Path
from typing import Any

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;
 max-width:1200px;margin:0 auto;padding:16px 24px;background:#fff}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;padding-top:8px;
 border-top:1px solid #ddd}
nav{font-size:13px;columns:3;background:#f6f8fa;padding:8px 12px;border-radius:6px}
nav a{display:block;color:#0366d6;text-decoration:none}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:3px 5px;white-space:nowrap}
td.w{white-space:normal;min-width:320px}
th{background:#f6f8fa;text-align:left;white-space:normal;vertical-align:bottom}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}tr.base td{background:#ddf4ff;font-weight:600}
img{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #eee}
.note{color:#555;background:#f6f8fa;border-left:3px solid #999;padding:6px 10px;margin:6px 0}
.warn{background:#fff8c5;border-left:3px solid #d4a72c;padding:6px 10px;margin:6px 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}
dt{color:#555}dd{margin:0}
"""


def fmt(v: Any) -> str:
    """A cell's text: numbers rounded for reading, None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.2f}" if abs(v) >= 1 else f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def short_keys(keys: list[str]) -> dict[str, str]:
    """Config keys by their last part (``LOSS.lambda_trans`` -> ``lambda_trans``) if unique."""
    last = Counter(k.rsplit(".", 1)[-1] for k in keys)
    return {k: k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k for k in keys}


def cell(v: Any) -> str:
    """One ``<td>``: numbers right-aligned, long text (e.g. a dict of overrides) wrapped."""
    text = fmt(v)
    cls = ' class="n"' if isinstance(v, (int, float)) else ' class="w"' if len(text) > 60 else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def table(
    rows: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    marked: set[str] = frozenset(),
) -> str:
    """An HTML table of row dicts (columns: the first row's keys); ``headers`` renames;
    rows whose ``id`` is in ``marked`` (the baseline) are highlighted."""
    if not rows:
        return note("no rows")
    cols = list(rows[0])
    names = {c: (headers or {}).get(c, c) for c in cols}
    head = "".join(
        f'<th title="{html.escape(c)}">'  # long names may wrap after a "_"
        f"{html.escape(names[c]).replace('_', '_<wbr>')}</th>"
        for c in cols
    )
    body = "".join(
        ('<tr class="base">' if r.get("id") in marked else "<tr>")
        + "".join(cell(r.get(c)) for c in cols)
        + "</tr>"
        for r in rows
    )
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def drop_constant(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> list[dict[str, Any]]:
    """``rows`` without those of ``cols`` that hold one value in every row (the overview
    says it once)."""
    same = {c for c in cols if len({fmt(r.get(c)) for r in rows}) == 1}
    return [{k: v for k, v in r.items() if k not in same} for r in rows]


def note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{html.escape(text)}</p>'


def image(path: Path | None, why_not: str) -> str:
    """The PNG embedded as a data URI, or a note saying why there is none."""
    if path is None:
        return note(why_not)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Row dicts as CSV (columns: the first row's keys; None as empty)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if rows:
            w.writerow(list(rows[0]))
            w.writerows([["" if v is None else v for v in r.values()] for r in rows])


def clean(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, paths strings."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x) if isinstance(x, Path) else x
