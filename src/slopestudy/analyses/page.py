"""The page's building blocks: one compact Markdown grid and the marker blocks of results/README.md.

A generated block stands between `<!-- study NAME: begin -->` and `<!-- study NAME: end -->`;
everything outside the markers is prose and is never touched.
"""

from __future__ import annotations

import pandas as pd


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """`| a | b |` rows under a `|---|---|` rule: the compact grid of the published page (unlike
    tables.markdown_table, no column padding, so a one-cell change is a one-line diff)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def pm(values: pd.Series, digits: int = 3) -> str:
    """'mean ± std' over the non-missing values ('mean' for one, '–' for none); no '-0.000'."""
    values = values.dropna()
    if values.empty:
        return "–"
    mean = round(values.mean(), digits) + 0.0
    return f"{mean:.{digits}f} ± {values.std():.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- study {name}: begin -->", f"<!-- study {name}: end -->"


def read_block(text: str, name: str) -> str | None:
    """The body between NAME's markers (without the newlines next to them), None if absent."""
    begin, end = markers(name)
    if begin not in text or end not in text:
        return None
    body = text.split(begin, 1)[1].split(end, 1)[0]
    return body.removeprefix("\n").removesuffix("\n")


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with NAME's block replaced by `body`; KeyError if the page has no such markers."""
    begin, end = markers(name)
    if begin not in text or end not in text:
        raise KeyError(f"no '{begin}' ... '{end}' in the page")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"
