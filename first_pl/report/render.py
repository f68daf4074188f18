"""The report's blocks as Markdown and HTML, and the one number format of every table cell
(the report's and the sweep's)."""

from __future__ import annotations

import html

from first_pl.report.blocks import Block, Figures, Heading, Paragraph, Report, Table


def fmt(value: object, spec: str = ".1f") -> str:
    """A table cell: a float in `spec`, '-' for a missing value, anything else as text."""
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table border='1' cellpadding='4'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_block(block: Block) -> str:
    match block:
        case Heading(text):
            return f"## {text}"
        case Paragraph(lines):
            return "\n".join(lines)
        case Table(columns, rows):
            return markdown_table(columns, rows)
        case Figures(paths):
            return "\n".join(f"![{path.stem}]({path.name})" for path in paths)
    raise TypeError(f"not a report block: {block!r}")


def html_block(block: Block) -> str:
    match block:
        case Heading(text):
            return f"<h2>{html.escape(text)}</h2>"
        case Paragraph(lines):
            return "".join(f"<p>{html.escape(line)}</p>" for line in lines)
        case Table(columns, rows):
            return html_table(columns, rows)
        case Figures(paths, captioned):
            return "".join(
                (f"<h3>{html.escape(path.stem)}</h3>" if captioned else "")
                + f"<img src='{path.name}' width='100%'>"
                for path in paths
            )
    raise TypeError(f"not a report block: {block!r}")


def to_markdown(report: Report) -> str:
    """The title, then each block, a blank line between them."""
    return "\n\n".join([f"# {report.title}", *map(markdown_block, report.blocks)]) + "\n"


def to_html(report: Report) -> str:
    """One page: the title, then each block."""
    title = html.escape(report.title)
    return (
        f"<html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>"
        + "".join(map(html_block, report.blocks))
        + "</body></html>"
    )


def write_report(report: Report) -> None:
    """`report.md` and `report.html` in the report's folder."""
    report.path.write_text(to_markdown(report))
    (report.folder / "report.html").write_text(to_html(report))
