"""The marker blocks of results/README.md (its tables are tables.md_table's compact grids).

A generated block stands between `<!-- study NAME: begin -->` and `<!-- study NAME: end -->`;
everything outside the markers is prose and is never touched.
"""

from __future__ import annotations


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
