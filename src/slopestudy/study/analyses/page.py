"""The marker blocks of results/README.md (its tables are tables.md_table's compact grids).

A generated block stands between `<!-- study NAME: begin -->` and `<!-- study NAME: end -->`;
everything outside the markers is prose and is never touched.
"""

from __future__ import annotations

import re


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


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than - and _ dropped, each
    space a hyphen ("95 % CIs" -> "95--cis")."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str, level: int = 2) -> list[str]:
    """The page's headings of `level` (## by default), outside code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#" * level + " "):
            out.append(line[level + 1 :].strip())
    return out


def contents(text: str) -> str:
    """The page's table of contents: one linked line per ## heading (generated, so an anchor
    cannot go stale when a heading changes)."""
    return "\n".join(f"- [{h}](#{slug(h)})" for h in headings(text) if h != "Contents")


def anchors(text: str) -> set[str]:
    """Every anchor a link into the page can use (its headings of every level)."""
    return {slug(h) for level in range(1, 5) for h in headings(text, level)}


IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")


def figures(text: str) -> list[tuple[str, str, str]]:
    """(alt text, path, the ## heading it sits under) of every figure the page embeds."""
    out, section, fenced = [], "", False
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        if fenced:
            continue
        if line.startswith("## "):
            section = line[3:].strip()
        out += [(alt, path, section) for alt, path in IMAGE.findall(line)]
    return out


def figure_index(text: str, command) -> str:
    """One line per embedded figure: what it shows, its section (linked), and `command(path)`, the
    command that draws it."""
    return "\n".join(
        f"- [{alt}]({path}) — [{section.split(' (')[0]}](#{slug(section)}); drawn by `{command(path)}`"
        for alt, path, section in figures(text)
    )
