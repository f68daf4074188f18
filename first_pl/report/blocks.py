"""What a report is made of: headings, paragraphs, tables and figures, typed and in order.

`build_report` gathers them once; `render` writes them as Markdown and HTML, and the pipeline's
W&B logger logs the same tables and figures, so nothing parses a rendered report back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from first_pl.fileio.run_files import REPORT_FILE


@dataclass(frozen=True)
class Heading:
    """The title of a part of the report."""

    text: str


@dataclass(frozen=True)
class Paragraph:
    """Notes: one Markdown line each (so one Markdown paragraph), one HTML paragraph each."""

    lines: list[str]


@dataclass(frozen=True)
class Table:
    """A table of formatted cells, a row per entry, as many cells as columns."""

    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figures:
    """Images written beside the report, shown by file name; `captioned`: each under its own
    subheading in HTML (one diagram per task)."""

    paths: list[Path]
    captioned: bool = False


Block = Heading | Paragraph | Table | Figures


@dataclass(frozen=True)
class Report:
    """A written report: its title, its blocks in order, and the folder it was written to."""

    title: str
    blocks: list[Block]
    folder: Path

    @property
    def path(self) -> Path:
        """The Markdown file (`report.md`); `report.html` and the figures lie beside it."""
        return self.folder / REPORT_FILE


@dataclass
class Section:
    """A titled part of the report as it is gathered: notes and a table, added to as the runs
    are read; `blocks` is what the report holds of it."""

    title: str
    notes: list[str]
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def blocks(self) -> list[Block]:
        """Its heading (when titled), its notes, and its table when it has rows."""
        return [*([Heading(self.title)] if self.title else []), Paragraph(self.notes),
                *([Table(self.header, self.rows)] if self.header and self.rows else [])]  # fmt: skip
