"""The CLI's tables and lines: rich on a terminal, plain lines anywhere else.

A CI log is not a terminal: rich would fold a table to 80 columns there, splitting words and
numbers ("componen|t", "13189427|2"). Off a terminal a table is printed as plain lines instead,
one a row, its columns aligned, however long the lines get, and text lines are not wrapped.

On a terminal rich stays, but no number or word is split: a column marked `no_wrap` (numbers,
names) keeps its width, the others wrap at spaces and are never narrower than their longest
word. A table that cannot fit so is shown as several, the first (key) column repeated in each
("components (1/2)"). Only a table whose key column and one other do not fit at all is left to
rich's folding.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Iterable, Union

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.errors import MarkupError
from rich.table import Table
from rich.text import Text

GAP = "  "  # between the columns of a plain table


def is_plain(console: Console) -> bool:
    """Plain lines: the output is not a terminal (a pipe, a file, a CI log)."""
    return not console.is_terminal


def print_line(console: Console, text: Union[str, Text]) -> None:
    """A line of text (rich markup allowed): wrapped at spaces on a terminal, whole elsewhere."""
    console.print(text, soft_wrap=is_plain(console))


def print_table(console: Console, table: Table) -> None:
    if is_plain(console):
        for line in plain_lines(table):
            console.out(line, highlight=False)
    else:
        for part in fit(table, console.width):
            console.print(part)


def print_all(console: Console, parts: Iterable[RenderableType]) -> None:
    """Tables as print_table, text as print_line, anything else as rich prints it."""
    for part in parts:
        if isinstance(part, Table):
            print_table(console, part)
        elif isinstance(part, (str, Text)):
            print_line(console, part)
        else:
            console.print(part)


def cell_text(cell: RenderableType) -> str:
    """What a cell shows, without its style: a str cell is rich markup, as rich renders it."""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        try:
            return Text.from_markup(cell).plain
        except MarkupError:
            return cell
    return str(cell)


def plain_lines(table: Table) -> list[str]:
    """The table as aligned plain lines: its title, the header (when shown), one line a row
    (a cell's own line breaks become spaces); right-justified columns stay so."""
    columns = table.columns
    rows = [[cell_text(c.header) for c in columns]] if table.show_header else []
    cells = [[cell_text(cell).replace("\n", " ") for cell in c.cells] for c in columns]
    rows += [list(row) for row in zip(*cells)]
    widths = [max((cell_len(row[i]) for row in rows), default=0) for i in range(len(columns))]
    lines = [cell_text(table.title)] if table.title else []
    for row in rows:
        out = []
        for i, (text, column) in enumerate(zip(row, columns)):
            pad = " " * (widths[i] - cell_len(text))
            out.append(pad + text if column.justify == "right" else text + pad)
        lines.append(GAP.join(out).rstrip())
    return lines


@dataclasses.dataclass
class _Need:
    natural: int  # the widest line of the column, header included
    least: int  # the narrowest it can be without splitting a word or, for no_wrap, anything
    wraps: bool


def _needs(table: Table) -> list[_Need]:
    needs = []
    for column in table.columns:
        texts = [cell_text(c) for c in column.cells]
        if table.show_header:
            texts.append(cell_text(column.header))
        lines = [line for text in texts for line in text.split("\n")]
        natural = max((cell_len(line) for line in lines), default=0)
        if column.no_wrap:
            needs.append(_Need(natural, natural, False))
        else:
            words = [cell_len(w) for line in lines for w in line.split()]
            needs.append(_Need(natural, max(words, default=0), True))
    return needs


def _overhead(table: Table, ncols: int) -> int:
    """Borders and padding of a table of ncols columns (as rich's Table counts them)."""
    _, right, _, left = table.padding
    if table.collapse_padding:
        left, right = 0, abs(left - right)
    pads = ncols * (left + right)
    if not table.pad_edge and ncols:
        pads -= left + right
    border = (2 if table.show_edge else 0) + max(ncols - 1, 0) if table.box else 0
    return pads + border


def _widths(needs: list[_Need], room: int) -> list[int]:
    """Widths within room: every column its least, what is left shared among the wrapping
    columns by how much more they would take, none beyond its natural width."""
    widths = [n.least for n in needs]
    spare = room - sum(widths)
    wants = [n.natural - n.least if n.wraps else 0 for n in needs]
    total = sum(wants)
    if total and spare > 0:
        for i, want in enumerate(wants):
            widths[i] += min(want, spare * want // total)
    return widths


def fit(table: Table, width: int) -> list[Table]:
    """The table as it can be printed `width` wide without splitting a number or a word: itself
    (with column widths set when rich would otherwise squeeze a column below its longest word),
    or several tables of its columns, each with the first one."""
    needs = _needs(table)
    ncols = len(needs)
    if ncols == 0 or sum(n.natural for n in needs) + _overhead(table, ncols) <= width:
        return [table]
    if sum(n.least for n in needs) + _overhead(table, ncols) <= width:
        return [_subtable(table, list(range(ncols)), _widths(needs, width - _overhead(table, ncols)))]
    groups: list[list[int]] = []
    for i in range(1, ncols):
        group = groups[-1] + [i] if groups else [0, i]
        if groups and sum(needs[j].least for j in group) + _overhead(table, len(group)) <= width:
            groups[-1] = group
        else:
            groups.append([0, i])
    if any(sum(needs[j].least for j in g) + _overhead(table, len(g)) > width for g in groups):
        return [table]  # too narrow for even two columns: rich folds
    out = []
    for k, group in enumerate(groups, 1):
        widths = _widths([needs[j] for j in group], width - _overhead(table, len(group)))
        title = f"{cell_text(table.title)} ({k}/{len(groups)})" if table.title else None
        out.append(_subtable(table, group, widths, title))
    return out


def _subtable(table: Table, columns: list[int], widths: list[int], title=None) -> Table:
    part = copy.copy(table)
    part.columns = [dataclasses.replace(table.columns[i], width=w) for i, w in zip(columns, widths)]
    part.rows = list(table.rows)
    if title is not None:
        part.title = title
    return part
