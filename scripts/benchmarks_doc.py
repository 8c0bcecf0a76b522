"""Writes a benchmark script's results into docs/BENCHMARKS.md, between the markers
`<!-- NAME:begin -->` and `<!-- NAME:end -->`, or as a new section at the end the first time."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs/BENCHMARKS.md"


def write_section(name, heading, body):
    text = DOC.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += f"\n## {heading}\n\n{block}\n"
    DOC.write_text(text)
