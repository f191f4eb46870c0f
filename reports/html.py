"""The one HTML kit of rollrisk's reports: a self-contained page of sections, tables and figures.

Used by the training/evaluation report (:mod:`rollrisk.reports.evaluation`) and the strategy
review page (:mod:`rollrisk.reports.strategy`). A page holds its CSS inline and its figures as
base64 PNG data URIs and loads nothing from the network, so it can be mailed, attached to an
MLflow run or opened from disk. The only script is the small inline one of
:func:`data_table` (sorting and filtering rows embedded in the page as JSON). Every piece of text that goes in is escaped
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
.zh{color:#3d4b5c;font-family:'Noto Sans CJK SC','Source Han Sans SC','PingFang SC','Microsoft YaHei',
'WenQuanYi Micro Hei',sans-serif}td.t{text-align:left}.bad{color:#a8322d}.good{color:#1f7a3a}.box{background:#f6f8fb;border-left:4px solid
#8aa1bd;padding:.5em 1em;margin:.8em 0}.box.warn{border-color:#c0563f;background:#fbf3f1}
.datatable th{cursor:pointer;user-select:none;text-align:left;position:sticky;top:0}
.datatable td{text-align:left;white-space:nowrap}.datatable td.num{text-align:right}
.datatable td.long{white-space:normal;min-width:22em}
.scroll{max-height:36em;overflow:auto;border:1px solid #d6dde6}.scroll table{margin:0}
.controls input,.controls select{margin:.2em .5em .2em 0;padding:.2em .4em}
"""

# Sorting and filtering of a data_table: the rows come from the page's own JSON, nothing is
# fetched. The text box filters on what a row shows ("84.5%", "12,345"), not on the stored
# values ("0.8451", 12345.2). Opened with ``#selftest`` in the address, the page checks its own tables (sort both
# ways, filter, clear) and writes the verdict to ``<body data-selftest=...>`` for the
# headless-browser test.
TABLE_SCRIPT = """
(function(){
function rows(t){return JSON.parse(document.getElementById(t.dataset.source).textContent);}
function cell(v){return v===null?'':String(v);}
function setup(t){
 var data=rows(t),cols=JSON.parse(t.dataset.columns),view=data.slice(),key=-1,asc=true;
 var body=t.tBodies[0],count=document.getElementById(t.id+'-count');
 var text=document.getElementById(t.id+'-filter'),pick=document.getElementById(t.id+'-segment');
 function draw(){
  var q=text.value.toLowerCase(),s=pick.value;
  view=data.filter(function(r){
   if(s&&r[cols.segment]!==s)return false;
   return !q||r.some(function(v,i){var f=cols.formats[i],
    d=(f==='pct'||f==='int')?cols.display[i](v):cell(v);
    return d.toLowerCase().indexOf(q)>=0;});});
  if(key>=0)view.sort(function(a,b){var x=a[key],y=b[key];
   var c=(typeof x==='number'&&typeof y==='number')?x-y:cell(x).localeCompare(cell(y));
   return asc?c:-c;});
  var html=[];
  view.slice(0,cols.limit).forEach(function(r){html.push('<tr>'+r.map(function(v,i){
   var d=cols.display[i]?cols.display[i](v):cell(v);
   var c=typeof v==='number'?' class="num"':cols.formats[i]==='long'?' class="long"':'';
   return '<td'+c+'>'+d+'</td>';}).join('')+'</tr>');});
  body.innerHTML=html.join('');
  count.textContent=view.length+' of '+data.length+' accounts'+
   (view.length>cols.limit?' (first '+cols.limit+' shown; filter to narrow)':'');
 }
 function esc(v){return cell(v).replace(/&/g,'&amp;').replace(/</g,'&lt;').replace(/>/g,'&gt;');}
 cols.display=cols.formats.map(function(f){
  if(f==='pct')return function(v){return v===null?'':(100*v).toFixed(1)+'%';};
  if(f==='int')return function(v){return v===null?'':Math.round(v).toLocaleString('en');};
  return esc;});
 Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){
  th.addEventListener('click',function(){
   asc=(key===i)?!asc:(['text','long'].indexOf(cols.formats[i])>=0);key=i;draw();});});
 text.addEventListener('input',draw);pick.addEventListener('change',draw);
 t.sortBy=function(i,up){key=i;asc=up;draw();};
 t.view=function(){return view;};
 draw();
}
function selftest(){
 var out=[];
 Array.prototype.forEach.call(document.querySelectorAll('table.datatable'),function(t){
  var cols=JSON.parse(t.dataset.columns),n=rows(t).length,i=cols.formats.indexOf('pct');
  t.sortBy(i,false);var v=t.view(),ok=true;
  for(var k=1;k<v.length;k++)if(v[k-1][i]<v[k][i])ok=false;
  if(!ok)out.push(t.id+': not sorted descending');
  t.sortBy(i,true);v=t.view();
  for(k=1;k<v.length;k++)if(v[k-1][i]>v[k][i])out.push(t.id+': not sorted ascending');
  var f=document.getElementById(t.id+'-filter'),first=cell(rows(t)[0][0]);
  f.value=first;f.dispatchEvent(new Event('input'));
  if(t.view().length<1||t.tBodies[0].rows.length<1)out.push(t.id+': filter lost the row');
  if(t.view().some(function(r){return !r.some(function(x){return cell(x).toLowerCase()
   .indexOf(first.toLowerCase())>=0;});}))out.push(t.id+': filter kept a row without the text');
  f.value='';f.dispatchEvent(new Event('input'));
  if(t.view().length!==n)out.push(t.id+': clearing the filter did not restore the rows');
 });
 document.body.dataset.selftest=out.length?'fail: '+out.join('; '):'ok';
}
document.addEventListener('DOMContentLoaded',function(){
 Array.prototype.forEach.call(document.querySelectorAll('table.datatable'),setup);
 if(location.hash==='#selftest')selftest();
});
})();
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
            numeric = isinstance(value, int | float | np.integer | np.floating)
            # text reads from the left; figures line up on the right
            cells.append(
                f"<td>{escape(text)}</td>" if numeric else f'<td class="t">{escape(text)}</td>'
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure(png: bytes, caption: str) -> str:
    """A PNG embedded as a data URI, with its caption (also its ``alt`` text)."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def data_table(
    table_id: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    *,
    segment_column: int,
    segments: Sequence[str],
    limit: int = 500,
) -> str:
    """A sortable, filterable table whose rows are embedded as JSON (no file is fetched).

    ``columns``: (header, format) pairs, format ``text``, ``long`` (text that wraps in a wide
    cell), ``int`` or ``pct`` (a share shown in per cent); ``rows``: one list of JSON values per row, in column order. A text box
    filters rows that contain its text in any cell, a list filters on ``segments`` (the
    column ``segment_column``); a click on a header sorts by it. At most ``limit`` matching
    rows are drawn (all are sorted and counted). Needs :data:`TABLE_SCRIPT` on the page
    (:func:`render_page` adds it when a section holds a data table).
    """
    import json

    payload = json.dumps([list(r) for r in rows], ensure_ascii=False, allow_nan=False)
    payload = payload.replace("</", "<\\/")  # a cell can never close the script element
    spec = {"formats": [f for _, f in columns], "segment": segment_column, "limit": limit}
    head = "".join(f"<th>{escape(h)}</th>" for h, _ in columns)
    options = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in segments)
    return (
        f'<div class="controls"><input id="{table_id}-filter" type="search" size="40" '
        f'placeholder="filter: account, product, reason, rule ..."><select id="{table_id}-segment">'
        f'<option value="">all segments</option>{options}</select>'
        f'<span id="{table_id}-count" class="note"></span></div>'
        f'<script type="application/json" id="{table_id}-data">{payload}</script>'
        f'<div class="scroll"><table class="datatable" id="{table_id}" '
        f"data-source=\"{table_id}-data\" data-columns='{escape(json.dumps(spec))}'>"
        f"<thead><tr>{head}</tr></thead><tbody></tbody></table></div>"
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
    script = f"<script>{TABLE_SCRIPT}</script>" if 'class="datatable"' in body else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style>{script}</head><body>"
        f"<h1>{escape(title)}</h1>{lead}"
        f"<nav>{nav}</nav>\n{body}\n</body></html>\n"
    )
