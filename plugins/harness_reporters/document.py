"""A small document model (sections of text, tables and PNG figures) rendered two ways: one
self-contained HTML page (CSS inline, images as base64 data URIs, nothing fetched) and Markdown with
the PNGs as files next to it. Used by ``harness report`` and ``harness leaderboard --markdown``.

Text blocks accept one piece of markup, `code` in backticks, which both renderers understand.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


BADGES = ("unreliable", "meaningless", "upper bound")  # cell values drawn as a red badge in HTML


@dataclass
class Text:
    text: str
    kind: str = ""           # "" (a paragraph), "missing" (what the run lacks), "note" (small print)


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    flagged: list[bool] = field(default_factory=list)  # rows to highlight (unreliable numbers)
    numeric: set[str] = field(default_factory=set)     # right-aligned columns
    caption: str = ""
    collapsed: bool = False  # HTML: inside a <details> element, closed


@dataclass
class Figure:
    name: str     # file stem of the PNG next to the Markdown; unique within a document
    png: bytes
    caption: str
    wide: bool = False  # HTML: the full page width rather than half of it


@dataclass
class Section:
    key: str      # HTML anchor
    title: str
    blocks: list = field(default_factory=list)
    short: str = ""  # the label in the table of contents (default: the title)

    def add(self, *blocks) -> "Section":
        self.blocks.extend(blocks)
        return self


@dataclass
class Document:
    title: str
    subtitle: str
    meta: list[tuple[str, str]]  # (label, value) pairs shown under the title
    sections: list[Section]


# -- Markdown -----------------------------------------------------------------------------------
def _md_cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    """A pipe table; flagged rows get a ⚠ in their first cell."""
    align = ["---:" if c in table.numeric else "---" for c in table.columns]
    lines = ["| " + " | ".join(_md_cell(c) for c in table.columns) + " |", "| " + " | ".join(align) + " |"]
    for index, row in enumerate(table.rows):
        cells = [_md_cell(v) for v in row]
        if index < len(table.flagged) and table.flagged[index] and cells:
            cells[0] = "⚠ " + cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(document: Document, image_dir: Path, link_dir: Path | None = None) -> str:
    """The document as Markdown; writes each figure as ``image_dir/<name>.png`` and links it as
    ``link_dir/<name>.png`` (default: by name alone, for a file in ``image_dir``)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    out = [f"# {document.title}", "", document.subtitle, ""] if document.subtitle else [f"# {document.title}", ""]
    out += [f"- **{label}**: {value}" for label, value in document.meta] + [""]
    out += ["Contents: " + " · ".join(f"[{s.short or s.title}](#{s.key})" for s in document.sections), ""]
    for section in document.sections:
        out += [f'<a id="{section.key}"></a>', "", f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                prefix = {"missing": "> **Not in this run:** ", "note": "_"}.get(block.kind, "")
                suffix = "_" if block.kind == "note" else ""
                out += [prefix + block.text + suffix, ""]
            elif isinstance(block, Table) and block.collapsed:  # GitHub renders <details>
                out += ["<details>", f"<summary>{block.caption} ({len(block.rows)} rows)</summary>", "",
                        markdown_table(block), "", "</details>", ""]
            elif isinstance(block, Table):
                out += ([f"**{block.caption}**", ""] if block.caption else []) + [markdown_table(block), ""]
            elif isinstance(block, Figure):
                (image_dir / f"{block.name}.png").write_bytes(block.png)
                link = f"{block.name}.png" if link_dir is None else (link_dir / f"{block.name}.png").as_posix()
                out += [f"![{block.name}]({link})", "", f"_{block.caption}_", ""]
    return "\n".join(out).rstrip() + "\n"


# -- HTML ---------------------------------------------------------------------------------------
CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dfe3ea; --zebra: #f6f8fb; --accent: #2457a6;
        --flag: #fdecea; --flag-line: #e8a39b; --missing: #fff7e0; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       color: var(--ink); background: #fff; }
header { background: #1f3b63; color: #fff; padding: 28px 0 22px; }
header .wrap, main { max-width: 1140px; margin: 0 auto; padding: 0 28px; }
header h1 { margin: 0 0 4px; font-size: 28px; font-weight: 650; letter-spacing: .2px; }
header p.subtitle { margin: 0 0 14px; color: #d5e1f5; font-size: 16px; }
header dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; font-size: 13px; }
header dt { color: #a9bedf; } header dd { margin: 0; color: #fff; word-break: break-all; }
nav { background: #eef2f8; border-bottom: 1px solid var(--line); font-size: 14px; }
nav .wrap { max-width: 1140px; margin: 0 auto; padding: 8px 28px; display: flex; flex-wrap: wrap; gap: 4px 18px; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
section { padding: 10px 0 18px; border-bottom: 1px solid var(--line); }
section:last-child { border-bottom: 0; }
h2 { font-size: 21px; margin: 22px 0 10px; color: #17315a; }
p { margin: 8px 0; max-width: 900px; }
p.note { color: var(--muted); font-size: 13px; }
p.missing { background: var(--missing); border-left: 4px solid #e0b34a; padding: 7px 12px; font-size: 14px; }
code { font: 12.5px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f0f2f6; padding: 1px 4px;
       border-radius: 3px; }
.tablewrap { overflow-x: auto; margin: 10px 0 14px; }
table { border-collapse: collapse; font-size: 13px; min-width: 40%; }
td.nw { white-space: nowrap; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0 0 6px; color: #17315a; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #eef2f8; font-weight: 600; white-space: nowrap; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--zebra); }
tbody tr.flag { background: var(--flag); }
tbody tr.flag td:first-child { box-shadow: inset 4px 0 0 var(--flag-line); }
span.badge { display: inline-block; background: #c0392b; color: #fff; font-size: 11px; font-weight: 600;
             padding: 0 6px; border-radius: 8px; margin-left: 4px; }
details { margin: 10px 0; } summary { cursor: pointer; color: var(--accent); font-size: 14px; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; margin: 12px 0; align-items: flex-start; }
figure { margin: 0; flex: 1 1 480px; max-width: 100%; border: 1px solid var(--line); border-radius: 6px;
         padding: 10px; background: #fff; }
figure.wide { flex-basis: 100%; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
footer { color: var(--muted); font-size: 12px; padding: 18px 0 30px; }
"""


def _inline(text: str) -> str:
    """Escape, then turn `code` into <code>code</code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


def html_table(table: Table) -> str:
    head = "".join(f'<th class="num">{_inline(c)}</th>' if c in table.numeric else f"<th>{_inline(c)}</th>"
                   for c in table.columns)
    body = []
    for index, row in enumerate(table.rows):
        flagged = index < len(table.flagged) and table.flagged[index]
        cells = []
        for column, value in zip(table.columns, row):
            text = _inline(value)
            if str(value).startswith(BADGES):  # a masking flag: unreliable, or its grades
                text = f'<span class="badge">{text}</span>'
            short = len(str(value)) <= 18  # names and numbers: never broken across lines
            kind = " ".join(k for k, on in (("num", column in table.numeric), ("nw", short)) if on)
            cells.append(f'<td class="{kind}">{text}</td>' if kind else f"<td>{text}</td>")
        attribute = ' class="flag"' if flagged else ""
        body.append(f"<tr{attribute}>{''.join(cells)}</tr>")
    caption = f"<caption>{_inline(table.caption)}</caption>" if table.caption else ""
    thead = f"<thead><tr>{head}</tr></thead>" if any(table.columns) else ""  # a key/value table needs none
    markup = f'<div class="tablewrap"><table>{caption}{thead}<tbody>{"".join(body)}</tbody></table></div>'

    if table.collapsed:
        summary = f"{_inline(table.caption or 'table')} ({len(table.rows)} rows)"
        return f"<details><summary>{summary}</summary>{markup}</details>"
    return markup


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (f'<figure class="{"wide" if figure.wide else ""}"><img alt="{html.escape(figure.caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{_inline(figure.caption)}</figcaption></figure>')


def to_html(document: Document, footer: str = "") -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(document.title)}</title><style>{CSS}</style></head><body>",
             f'<header><div class="wrap"><h1>{_inline(document.title)}</h1>']
    if document.subtitle:
        parts.append(f'<p class="subtitle">{_inline(document.subtitle)}</p>')
    parts.append("<dl>" + "".join(f"<dt>{_inline(k)}</dt><dd>{_inline(v)}</dd>" for k, v in document.meta)
                 + "</dl></div></header>")
    parts.append('<nav><div class="wrap">' + "".join(f'<a href="#{s.key}">{_inline(s.short or s.title)}</a>'
                                                      for s in document.sections) + "</div></nav><main>")
    for section in document.sections:
        parts.append(f'<section id="{section.key}"><h2>{_inline(section.title)}</h2>')
        figures: list[str] = []
        for block in section.blocks + [None]:
            if isinstance(block, Figure):
                figures.append(_figure(block))
                continue
            if figures:  # consecutive figures share one flex row
                parts.append('<div class="figs">' + "".join(figures) + "</div>")
                figures = []
            if isinstance(block, Text):
                label = "<strong>Not in this run:</strong> " if block.kind == "missing" else ""
                parts.append(f'<p class="{block.kind}">{label}{_inline(block.text)}</p>')
            elif isinstance(block, Table):
                parts.append(html_table(block))
        parts.append("</section>")
    parts.append(f"<footer>{_inline(footer)}</footer></main></body></html>")
    return "\n".join(parts) + "\n"
