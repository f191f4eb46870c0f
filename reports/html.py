"""The one HTML kit of rollrisk's reports: a self-contained page of sections, tables and figures.

Used by the training/evaluation report (:mod:`rollrisk.reports.evaluation`) and the strategy
review page (:mod:`rollrisk.reports.strategy`). A page holds its CSS inline and its figures as
base64 PNG data URIs, loads nothing from the network and runs no script, so it can be mailed,
attached to an MLflow run or opened from disk. Every piece of text that goes in is escaped
here; the builders never write markup by hand except through :meth:`Section.raw`.

Building a page::

    section = Section("summary", "Summary")
    section.text("Plain text, escaped.")
    section.table(frame, {"share": "{:.1%}"})
    section.image(figure_png(figure), "caption")
    page = render_page("Title", [section], subtitle="as-of 2025-12-31")
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2733;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d6dde6;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #d6dde6;padding:.3em .6em;text-align:right}
th{background:#eef2f7}td:first-child,th:first-child{text-align:left}
.note{color:#5a6878;font-size:.9em}.kpi{display:inline-block;background:#eef2f7;border-radius:6px;
padding:.6em 1em;margin:.3em;min-width:12em}.kpi b{display:block;font-size:1.3em}
img{max-width:100%;height:auto}figure{margin:1em 0}figcaption{color:#5a6878;font-size:.85em}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{flex:1 1 480px}
"""

CellFormat = Callable[[Any], str]


def escape(text: object) -> str:
    """``text`` as HTML text (``<``, ``>``, ``&`` and quotes escaped)."""
    return html.escape(str(text))


def inline_markdown(text: str) -> str:
    """Escape ``text``, then render the two inline marks the reports use: **bold** and `code`."""
    pieces = escape(text).split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(pieces))
    pieces = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def slug(text: str) -> str:
    """An ``id`` for an HTML element from a heading: lower case, words joined by ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def figure_png(figure: Any, dpi: int = 100, tight: bool = False) -> bytes:
    """A matplotlib figure as PNG bytes (``tight``: trimmed to what is drawn). The figure is
    left open: a caller that drew it with pyplot closes it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    return buffer.getvalue()


def plain_cell(value: Any) -> str:
    """A cell without a column format: floats with two decimals and thousands separators."""
    if isinstance(value, float | np.floating):
        return f"{value:,.2f}"
    return str(value)


def table(
    frame: pd.DataFrame,
    formats: Mapping[str, str] | None = None,
    default: CellFormat = plain_cell,
) -> str:
    """``frame`` as an HTML table (header from its columns, index dropped).

    A numeric cell of a column in ``formats`` is written with that format string (NaN as
    ``n/a``); every other cell with ``default``.
    """
    formats = formats or {}
    head = "".join(f"<th>{escape(column)}</th>" for column in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            fmt = formats.get(str(column))
            if fmt and isinstance(value, int | float | np.integer | np.floating):
                text = (
                    "n/a" if isinstance(value, float) and math.isnan(value) else fmt.format(value)
                )
            else:
                text = default(value)
            cells.append(f"<td>{escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure(png: bytes, caption: str) -> str:
    """A PNG embedded as a data URI, with its caption (also its ``alt`` text)."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


@dataclass
class Section:
    """One ``<section>`` of a page: a heading (``<h2>`` by default) and its parts, in order."""

    section_id: str
    title: str
    level: int = 2
    parts: list[str] = field(default_factory=list)

    def text(self, sentence: str) -> None:
        self.parts.append(f"<p>{escape(sentence)}</p>")

    def markdown(self, sentence: str) -> None:
        """A paragraph whose **bold** and `code` marks are rendered (see :func:`inline_markdown`)."""
        self.parts.append(f"<p>{inline_markdown(sentence)}</p>")

    def note(self, sentence: str) -> None:
        self.parts.append(f'<p class="note">{escape(sentence)}</p>')

    def table(
        self,
        frame: pd.DataFrame,
        formats: Mapping[str, str] | None = None,
        default: CellFormat = plain_cell,
    ) -> None:
        self.parts.append(table(frame, formats, default))

    def image(self, png: bytes, caption: str) -> None:
        self.parts.append(figure(png, caption))

    def kpis(self, figures: Sequence[tuple[str, str]]) -> None:
        """Headline figures as tiles: (label, value) pairs."""
        self.parts.append(
            "".join(f'<div class="kpi">{escape(k)}<b>{escape(v)}</b></div>' for k, v in figures)
        )

    def raw(self, markup: str) -> None:
        """Markup the caller built (only structure, such as a ``<div class="grid">``)."""
        self.parts.append(markup)

    def render(self) -> str:
        body = "\n".join(self.parts)
        heading = f"<h{self.level}>{escape(self.title)}</h{self.level}>"
        return f'<section id="{escape(self.section_id)}">\n{heading}\n{body}\n</section>'


def render_page(title: str, sections: Sequence[Section], subtitle: str | None = None) -> str:
    """The whole page: title, optional subtitle, a table of contents, then the sections."""
    nav = " · ".join(f'<a href="#{escape(s.section_id)}">{escape(s.title)}</a>' for s in sections)
    lead = f'<p class="note">{escape(subtitle)}</p>' if subtitle else ""
    body = "\n".join(s.render() for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{lead}"
        f"<nav>{nav}</nav>\n{body}\n</body></html>\n"
    )
