"""nightly/htmlreport.py: report.html is one self-contained page (no URL to fetch), names every
cell, links to run.html where it exists, and is written whatever the data (no cells, all errors,
no rates, a history or an unreadable one)."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from test_nightly_results import make_cell, make_doc, matrix_cells

from dumpbed.nightly import history, htmlreport


class _Page(HTMLParser):
    """Every tag's attributes, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def hrefs(self) -> list[str]:
        return [a["href"] for t, a in self.tags if t == "a" and "href" in a]


def external(text: str) -> list[str]:
    """What would make a browser fetch something: an absolute URL in src/href/url(), a script or
    stylesheet from elsewhere, an @import."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|file:)[^"'\s>]*""", text, re.I)
    found += re.findall(r"url\(\s*['\"]?(?:https?:|//)[^)]*\)", text, re.I)
    found += re.findall(r"<script[^>]*\bsrc\s*=|<link[^>]*\bhref\s*=|@import", text, re.I)
    return found


def test_the_external_finder_finds_what_it_looks_for():
    """The finder on doctored pages: each kind of external reference is caught."""
    for bad in ('<img src="https://x/y.png">', "<a href='http://x'>", '<script src="a.js"></script>',
                '<link rel="stylesheet" href="s.css">', "<style>@import 'x.css';</style>",
                '<div style="background: url(https://x/y)">', '<image xlink:href="//cdn/x.png"/>'):
        assert external(bad), bad
    assert external('<a href="cells/a/run/run.html">') == []


def _report(tmp_path, doc, **kw) -> str:
    path = htmlreport.write(tmp_path, doc, **kw)
    assert path == tmp_path / "report.html"
    return path.read_text()


def _with_runs(tmp_path) -> dict:
    """The matrix's cells, with run.html written for every other cell that has a run directory."""
    doc = make_doc(matrix_cells())
    for k, c in enumerate(doc["cells"]):
        if c["run_dir"]:
            (tmp_path / c["run_dir"]).mkdir(parents=True)
            if k % 2 == 0:
                (tmp_path / c["run_dir"] / "run.html").write_text("<html></html>")
    return doc


def test_self_contained_with_every_cell_and_links(tmp_path):
    doc = _with_runs(tmp_path)
    text = _report(tmp_path, doc)
    assert external(text) == []
    page = _Page(text)
    shown = "".join(page.text)
    for c in doc["cells"]:
        assert c["id"] in shown
    hrefs = page.hrefs()
    for k, c in enumerate(doc["cells"]):
        if c["run_dir"] is None:
            continue
        want = c["run_dir"] + ("/run.html" if k % 2 == 0 else "/")
        assert want in hrefs, want
    # each link leads somewhere that exists, relative to the page
    for href in hrefs:
        assert (tmp_path / href.replace("%25", "%")).exists(), href
    assert "<svg" in text and "throughput" in text
    assert '<figure id="throughput">' in text


def test_a_link_is_quoted(tmp_path):
    doc = make_doc([make_cell(0, fault="kill@50%", run_dir="cells/kill@50%/run")])
    text = _report(tmp_path, doc)
    assert 'href="cells/kill%4050%25/run/"' in text


def test_grid_per_disk_with_a_mark_per_cell_of_a_square(tmp_path):
    doc = _with_runs(tmp_path)
    page = _Page(_report(tmp_path, doc))
    grids = [a["data-disk"] for t, a in page.tags if t == "table" and "grid" in a.get("class", "")]
    assert grids == ["virtio-blk", "nvme"]
    marks = [a for t, a in page.tags if t in ("a", "span") and "mark" in a.get("class", "").split()
             and "title" in a]
    assert sorted(m["title"].split(":")[0] for m in marks) == sorted(c["id"] for c in doc["cells"])
    classes = [m["class"] for m in marks]
    assert classes.count("mark pass") == 8 and classes.count("mark fail") == 1 and classes.count("mark error") == 1
    # not run: nvme's panic x eio-at=40 and virtio-blk's panic x kill@50% (only big has that fault)
    not_run = [t for t, a in page.tags if a.get("class") == "mark not-run"]
    assert len(not_run) == 1 + 2  # the legend's and the squares'
    # virtio-blk's nmi x none square holds three cells: virtio's and two of group big (64M, 256M)
    text = "".join(page.text)
    assert "virtio/64M" in text and "big/256M" in text


@pytest.mark.parametrize("cells", [
    [],
    [make_cell(i, crash=f"c{i}", outcome="error") for i in range(3)],
    [make_cell(i, crash=f"c{i}", mib_s=None) for i in range(3)],
], ids=["no-cells", "all-errors", "no-rates"])
def test_odd_data_still_gives_a_page(tmp_path, cells):
    text = _report(tmp_path, make_doc(cells), history=tmp_path / "h.sqlite")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert external(text) == []
    assert 'id="notes"' not in text  # nothing failed to draw: the odd data is simply shown as such
    if not cells:
        assert "no cells." in text
    else:
        assert "no dump rate was measured" in text


def test_a_part_that_fails_is_noted_and_the_page_still_written(tmp_path, monkeypatch):
    def broken(*args, **kw):
        raise ValueError("doctored")

    monkeypatch.setattr(htmlreport, "_throughput", broken)
    text = _report(tmp_path, make_doc(matrix_cells()))
    assert "throughput: ValueError: doctored" in text and "virtio/virtio-blk/nmi/none/64M/auto" in text


def test_with_history_regressions_first_and_trends(tmp_path):
    db = tmp_path / "h.sqlite"
    cells = matrix_cells()
    for k in range(6):
        nightly = make_doc([dict(c, mib_s=1000.0 if c["mib_s"] else None) for c in cells],
                           started=f"2026-12-0{k + 1}T01:00:00Z", finished=f"2026-12-0{k + 1}T02:00:00Z")
        history.record(db, nightly, label=f"n{k}" if k % 2 else None)
    cells[0].update(outcome="fail", verdict="fail", failed_checks=["canary"])
    cells[1].update(mib_s=500.0)
    doc = make_doc(cells, started="2026-12-09T01:00:00Z", finished="2026-12-09T02:00:00Z")
    night = history.record(db, doc)
    text = _report(tmp_path, doc, history=db, night=night)
    assert external(text) == []
    assert text.index('id="regressions"') < text.index('class="grid"') < text.index('id="throughput"') \
        < text.index('class="trend"')
    regressions = text[text.index('id="regressions"'):text.index('class="grid"')]
    assert "newly-failing" in regressions and cells[0]["id"] in regressions
    assert "throughput" in regressions and cells[1]["id"] in regressions
    assert [d for d in re.findall(r'class="trend" data-disk="([^"]+)"', text)] == ["virtio-blk", "nvme"]
    # the night found without being named: the one recorded for this document
    assert _report(tmp_path, doc, history=db) == text


def test_a_night_not_in_the_history_is_said(tmp_path):
    db = tmp_path / "h.sqlite"
    text = _report(tmp_path, make_doc(matrix_cells()), history=db)
    assert "this night is not in the history" in text


def test_an_unreadable_history_is_noted_not_raised(tmp_path):
    (tmp_path / "junk").write_bytes(b"not sqlite" * 200)
    text = _report(tmp_path, make_doc(matrix_cells()), history=tmp_path / "junk")
    assert 'id="notes"' in text and "history" in text and 'class="grid"' in text


def test_svg_ids_are_unique_across_the_page(tmp_path):
    """Two inlined SVGs with one id would make a browser take one's clip path for the other's."""
    db = tmp_path / "h.sqlite"
    doc = make_doc(matrix_cells())
    for k in range(3):
        history.record(db, dict(doc, started=f"2026-12-0{k + 1}T01:00:00Z", finished=f"2026-12-0{k + 1}T02:00:00Z"))
    text = _report(tmp_path, doc, history=db)
    assert text.count("<svg") == 3
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
