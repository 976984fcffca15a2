"""A benchmark's part of a hand-written Markdown page: the lines between its two marker comments,
replaced on every run, so that the prose around them stays as it was written."""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The comment lines that open and close section ``name``."""
    return f"<!-- {name}: written by the benchmark, do not edit -->", f"<!-- end of {name} -->"


def write_section(page: Path, name: str, lines: list[str]) -> None:
    """Put ``lines`` between section ``name``'s markers in ``page``; a page without them gets the
    section at its end (a new page: the section alone)."""
    start, end = markers(name)
    block = "\n".join([start, *lines, end])
    text = page.read_text() if page.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
