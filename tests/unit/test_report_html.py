"""The report kit: escaping, cell formats, and a page that stands on its own."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from rollrisk.reports.html import Section, inline_markdown, render_page, slug, table


def test_tables_escape_their_content_and_apply_column_formats():
    text = table(
        pd.DataFrame({"<a>": ["<script>"], "b": [0.5], "c": [np.nan], "d": [1234.5]}),
        {"b": "{:.0%}", "c": "{:.1%}"},
    )
    assert "&lt;script&gt;" in text and "<script>" not in text and "<th>&lt;a&gt;</th>" in text
    assert "<td>50%</td>" in text and "<td>n/a</td>" in text  # a missing formatted value
    assert "<td>1,234.50</td>" in text  # unformatted floats: two decimals, thousands separated


def test_a_caller_chooses_how_unformatted_cells_read():
    text = table(pd.DataFrame({"auc": [0.123456]}), default=lambda value: f"{value:.4f}")
    assert "<td>0.1235</td>" in text


def test_inline_markdown_renders_bold_and_code_after_escaping():
    assert inline_markdown("**a<b** and `x&y`") == (
        "<strong>a&lt;b</strong> and <code>x&amp;y</code>"
    )


def test_a_page_has_its_sections_a_contents_line_and_loads_nothing():
    summary = Section("summary", "Summary")
    summary.text("1 < 2")
    summary.kpis([("accounts", "1,000")])
    summary.image(b"\x89PNG\r\n\x1a\n", "a <figure>")
    detail = Section(slug("Per-slice metrics (PSI)"), "Per-slice metrics (PSI)", level=3)
    detail.markdown("**bold**")
    page = render_page("Title & co", [summary, detail], subtitle="as-of 2025-12-31")
    assert page.startswith("<!DOCTYPE html>") and "<title>Title &amp; co</title>" in page
    assert '<section id="summary">' in page and '<section id="per-slice-metrics-psi">' in page
    assert '<a href="#per-slice-metrics-psi">Per-slice metrics (PSI)</a>' in page
    assert "<h3>Per-slice metrics (PSI)</h3>" in page and "<p>1 &lt; 2</p>" in page
    assert 'alt="a &lt;figure&gt;" src="data:image/png;base64,iVBORw0KGgo="' in page
    assert '<p class="note">as-of 2025-12-31</p>' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<script" not in page
