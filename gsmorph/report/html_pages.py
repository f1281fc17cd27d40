"""Statistics files as standalone HTML pages (results/stats/<name>.html beside each CSV), so
that the HTML report shows them as tables instead of offering a download."""
from __future__ import annotations

import html
import math

import pandas as pd

STYLE = ("body{font-family:sans-serif;font-size:12px;margin:12px} h1{font-size:15px} p{max-width:70em;color:#333} "
         "table{border-collapse:collapse} th,td{padding:2px 7px;border-bottom:1px solid #ddd;text-align:right} "
         "th{position:sticky;top:0;background:#f4f4f4} td.text,th.text{text-align:left}")


def _value(value) -> str:
    """A cell as text: floats with 4 significant digits, missing values as empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def frame_page(frame: pd.DataFrame, title: str, caption: str = "") -> str:
    """A page with the title, the caption and every row of `frame` (columns as given)."""
    text_cols = {c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])}

    def cls(col) -> str:
        return ' class="text"' if col in text_cols else ""

    head = "".join(f"<th{cls(c)}>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td{cls(c)}>{html.escape(_value(v))}</td>" for c, v in zip(frame.columns, row))
                   + "</tr>" for row in frame.itertuples(index=False, name=None))
    if frame.empty:
        body = f'<tr><td class="text" colspan="{max(1, len(frame.columns))}">(no rows)</td></tr>'
    note = f"<p>{html.escape(caption)}</p>" if caption else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{note}"
            f"<p>{len(frame)} rows; the same table as CSV beside this page.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n")
