"""Shell commands of README.md and docs/*.md, as the docs test runs them.

Every fenced `bash`/`sh`/`shell` block is read; a line ending in `\\` continues on the next. Two
opt-outs, for commands that cannot run on a CPU machine or in CI (a GPU, a camera, weights this
machine cannot download):

* a line whose comment says `not run:` and gives the reason (after any other comment):
  `u2deploy export u2net --fmt trt --fp16   # engine; not run: needs an NVIDIA GPU`
* an HTML comment on the line just before the fence skips the whole block:
  `<!-- not run: needs a Jetson -->`

`SKIP` in the test lists the remaining lines by their text, each with the reason.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["Command", "doc_files", "extract", "ROOT"]

_FENCE = re.compile(r"^```(bash|sh|shell)\s*$")
_BLOCK_OPT_OUT = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
_LINE_OPT_OUT = re.compile(r"#.*?\bnot run:\s*(.+)$")


@dataclass(frozen=True)
class Command:
    """One command line of a document."""

    doc: str
    line: int
    text: str
    skip: str | None = None

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every docs/*.md (new pages are picked up without editing the test)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(doc: str, start: int, body: list[str], block_skip: str | None) -> list[Command]:
    commands, pending, first = [], "", 0
    for offset, raw in enumerate(body):
        if not pending:
            first = start + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text = (pending + raw).strip()
        pending = ""
        if not text or text.startswith("#"):
            continue
        opt_out = _LINE_OPT_OUT.search(text)
        commands.append(Command(doc, first, text, block_skip or (opt_out.group(1).strip() if opt_out else None)))
    return commands


def extract(path: Path) -> list[Command]:
    """The commands of one Markdown file, in order."""
    lines = path.read_text().splitlines()
    doc = str(path.relative_to(ROOT))
    commands: list[Command] = []
    index = 0
    while index < len(lines):
        if _FENCE.match(lines[index].strip()):
            before = lines[index - 1] if index else ""
            opt_out = _BLOCK_OPT_OUT.search(before)
            end = next((k for k in range(index + 1, len(lines)) if lines[k].strip().startswith("```")), len(lines))
            commands += _commands(doc, index + 2, lines[index + 1:end], opt_out.group(1) if opt_out else None)
            index = end
        index += 1
    return commands
