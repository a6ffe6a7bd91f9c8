"""One page to look at: ``index.html`` beside the files ``eval-map --analyze DIR`` and
``detect --out DIR`` write.

Both pages are static and self-contained: every number is inlined in the HTML (``file://``
pages cannot fetch), pictures are relative ``<img src>`` links to the PNGs in the same folder,
nothing comes from the network (no CDN, no fonts), and the only script is the detect page's
class filter (a few lines inline). Every string from user data (class names, file names) is
escaped with :func:`html.escape`; links are percent-encoded.

- :func:`analysis_page` -- from what :func:`eval.analysis.analyze` returns (``analysis.json``'s
  content) and the files :func:`detector.io.figures.write_report` wrote: the AP table per class with
  TIDE's dAP and Hoiem's false-positive shares, then per subject (all classes, and each class
  with figures) the TIDE, Hoiem and COCO-stack charts, sensitivity (table and chart), the
  confusion matrix (table and chart) and the galleries.
- :func:`detect_page` -- each picture detect drew with its table of detections, and a class
  filter (checkboxes hiding the table rows of a class; the pictures stay as drawn).
- :func:`write_report_page` -- the one place a page is written (atomically).
"""

from __future__ import annotations

import html
import os
import urllib.parse

from backbone.io import atomic_write
from eval.analysis import TIDE_MAIN, TIDE_SPECIAL, safe_name

PAGE_NAME = "index.html"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.5em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.meta{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.2em .55em;text-align:right}
th{background:#f0f0f0}td.name,th.name{text-align:left}
tfoot td{font-weight:bold;background:#fafafa}
.figs{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start}.figs figure{margin:0;flex:1 1 360px;max-width:100%}
.figs.wide figure{flex-basis:100%}
figure img,img.pic{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}
.filter{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc;z-index:1}
.filter label{margin-right:1em;white-space:nowrap}
.image{margin:1.2em 0 2em}.side{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.side img.pic{flex:0 1 auto;max-width:min(100%,760px)}.none{color:#777;font-style:italic}
nav a{margin-right:1em}
"""


def write_report_page(path: str, page: str) -> str:
    """Write the page ``page`` (HTML text) to ``path`` atomically; returns the absolute path."""
    return atomic_write(path, page, what="report page")


# ----------------------------------------------------------------------------------------------
# helpers


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _src(path: str, folder: str) -> str:
    """``path`` as a relative, percent-encoded link from ``folder`` (attribute-escaped)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    return _e(urllib.parse.quote(rel.replace(os.sep, "/")))


def _num(x, fmt: str = ".4f") -> str:
    return "&ndash;" if x is None else format(x, fmt)


def _pct(x) -> str:
    return "&ndash;" if x is None else f"{100 * x:.0f}%"


def _doc(title: str, body: list[str], script: str = "") -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # nothing from the network, the inline style and script only
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file: data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", *body,
        (f"<script>{script}</script>" if script else ""), "</body>", "</html>", ""])


def _figure(path: str, folder: str, caption: str) -> str:
    return (f'<figure><img src="{_src(path, folder)}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


# ----------------------------------------------------------------------------------------------
# eval-map --analyze


def analysis_page(result: dict, written: list[str], folder: str) -> str:
    """The analysis page for ``folder``: ``result`` is what :func:`eval.analysis.analyze`
    returns (the content of ``analysis.json``), ``written`` the paths
    :func:`detector.io.figures.write_report` returned (figures link to those that exist)."""
    files = {os.path.basename(p): p for p in written}
    classes = [str(c) for c in result["classes"]]
    tide, hoiem = result["tide"], result["hoiem"]
    t = result["iou"]
    title = f"error analysis ({result['protocol']}, IoU {result['iou_protocol']})"
    n_valid = sum(1 for a in result["AP"] if a is not None)
    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="meta">mAP {_num(result["mAP"])} over {n_valid} classes with ground truth; '
            f'{int(result["num_images"])} images, {int(result["num_detections"])} detections; errors at IoU {t:g} '
            f'(mAP there {_num(tide["mAP"])}). Every number is in '
            + "".join(f'<a href="{_e(n)}">{_e(n)}</a>{s}' for n, s in (("analysis.json", " and "),
                                                                       ("summary.txt", ".")) if n in files)
            + "</p>",
            "<nav>" + "".join(f'<a href="#{a}">{n}</a>' for a, n in (
                ("ap", "AP per class"), ("charts", "TIDE, Hoiem, COCO stack"), ("sensitivity", "sensitivity"),
                ("confusion", "confusion"), ("galleries", "galleries"))) + "</nav>"]

    # the AP table
    body.append('<h2 id="ap">AP and errors per class</h2>')
    body.append(f"<p>TIDE dAP: the AP gained by fixing each error type alone (fractions of 1, like AP, at IoU "
                f"{t:g}); Hoiem: false-positive types among each class's first npos detections.</p>")
    two = str(result["iou_protocol"]) != str(t)   # coco's AP over 0.50:0.95 and the errors' AP at t
    head = (['<th class="name">class</th>', "<th>objects</th>", f"<th>AP ({_e(result['iou_protocol'])})</th>"]
            + ([f"<th>AP@{t:g}</th>"] if two else []) + [f"<th>dAP {n}</th>" for n in TIDE_MAIN + TIDE_SPECIAL]
            + ["<th>largest</th>", '<th class="name">Hoiem false positives</th>'])

    def cells(d, h):
        if d is None:
            return ([f"<td>{_num(None)}</td>"] * (two + len(TIDE_MAIN) + len(TIDE_SPECIAL) + 1)
                    + ['<td class="name">no ground truth</td>'])
        fps = (h or {}).get("fp_shares_at_npos", {})
        hs = ", ".join(f"{_e(k)} {_pct(v)}" for k, v in sorted(fps.items(), key=lambda kv: -(kv[1] or 0)) if v)
        return ([f"<td>{_num(d.get('AP', d.get('mAP')))}</td>"] * two
                + [f"<td>{_num(d['dAP'][n])}</td>" for n in TIDE_MAIN]
                + [f"<td>{_num(d['special'][n])}</td>" for n in TIDE_SPECIAL]
                + [f"<td>{_e(d['largest'] or 'none')}</td>", f'<td class="name">{hs or "&ndash;"}</td>'])

    rows = []
    for c, name in enumerate(classes):
        d = tide["per_class"].get(name)
        rows.append(f'<tr data-class="{_e(name)}"><td class="name">{_e(name)}</td><td>{int(result["npos"][c])}</td>'
                    f'<td>{_num(result["AP"][c])}</td>' + "".join(cells(d, hoiem["per_class"].get(name))) + "</tr>")
    body += ['<table id="ap-table">', "<thead><tr>" + "".join(head) + "</tr></thead>", "<tbody>", *rows, "</tbody>",
             f'<tfoot><tr><td class="name">all classes</td><td>{sum(int(n) for n in result["npos"])}</td>'
             f'<td>{_num(result["mAP"])}</td>' + "".join(cells(tide, hoiem["all"])) + "</tr></tfoot>", "</table>"]

    # the charts per subject
    body.append('<h2 id="charts">TIDE, Hoiem and COCO stack</h2>')
    subjects = [("all", "all classes")] + [(safe_name(c), c) for c in classes]
    kinds = (("tide", "TIDE dAP"), ("hoiem", "Hoiem false positives"), ("coco_stack", "COCO PR stack"))
    shown = 0
    for fname, label in subjects:
        figs = [_figure(files[f"{k}_{fname}.png"], folder, f"{label}: {cap}") for k, cap in kinds
                if f"{k}_{fname}.png" in files]
        if figs:
            shown += 1
            body += [f"<h3>{_e(label)}</h3>", '<div class="figs">', *figs, "</div>"]
    if not shown:
        body.append('<p class="none">no charts were written</p>')
    if 0 < shown - 1 < len(tide["per_class"]):
        body.append('<p class="meta">Charts are drawn for all classes together and the 5 lowest-AP classes; '
                    "<code>--analyze-all</code> draws every class.</p>")

    # sensitivity
    body.append('<h2 id="sensitivity">Sensitivity</h2>')
    sens = result.get("sensitivity") or {}
    for key, what in (("size", "object size (area in pixels)"), ("aspect", "aspect ratio (width / height)")):
        s = sens.get(key)
        if not s:
            continue
        bins = list(s["mAP"])
        body += [f"<h3>AP by {_e(what)}</h3>", f'<table class="sensitivity" id="sensitivity-{_e(key)}">',
                 '<thead><tr><th class="name">class</th>' + "".join(f"<th>{_e(b)}</th>" for b in bins) + "</tr></thead>",
                 "<tbody>"]
        for name in classes:
            pc = s.get("per_class", {}).get(name, {})
            body.append(f'<tr><td class="name">{_e(name)}</td>' + "".join(f"<td>{_num(pc.get(b))}</td>" for b in bins)
                        + "</tr>")
        body += ["</tbody>", '<tfoot><tr><td class="name">all classes (objects)</td>'
                 + "".join(f"<td>{_num(s['mAP'].get(b))} ({int(s.get('npos', {}).get(b) or 0)})</td>" for b in bins)
                 + "</tr></tfoot>", "</table>"]
    if "sensitivity.png" in files:
        body += ['<div class="figs">', _figure(files["sensitivity.png"], folder, "sensitivity"), "</div>"]

    # confusion
    body.append('<h2 id="confusion">Confusion matrix</h2>')
    conf = result.get("confusion")
    if conf:
        body.append(f"<p>{_e(conf.get('note', ''))}</p>")
        body += ['<table id="confusion-table">',
                 '<thead><tr><th class="name">object \\ detection</th>'
                 + "".join(f"<th>{_e(c)}</th>" for c in conf["columns"]) + "</tr></thead>", "<tbody>"]
        for name, row in zip(conf["rows"], conf["matrix"]):
            body.append(f'<tr><td class="name">{_e(name)}</td>' + "".join(f"<td>{int(v)}</td>" for v in row) + "</tr>")
        body += ["</tbody>", "</table>"]
    if "confusion.png" in files:
        body += ['<div class="figs">', _figure(files["confusion.png"], folder, "confusion matrix"), "</div>"]

    # galleries
    body.append('<h2 id="galleries">Galleries</h2>')
    gal = [_figure(files[f"gallery_{safe_name(c)}.png"], folder, f"{c}: top false positives and missed objects")
           for c in classes if f"gallery_{safe_name(c)}.png" in files]
    body += ['<div class="figs wide">', *gal, "</div>"] if gal else [
        '<p class="none">no galleries: they need the images (the ground truth gave no image files that exist)</p>']
    return _doc(title, body)


# ----------------------------------------------------------------------------------------------
# detect --out

_FILTER_JS = """
(function(){
  var boxes = document.querySelectorAll('input.class-filter');
  function apply(){
    var on = {};
    boxes.forEach(function(cb){ on[cb.value] = cb.checked; });
    document.querySelectorAll('tr[data-class]').forEach(function(tr){ tr.hidden = !on[tr.getAttribute('data-class')]; });
  }
  boxes.forEach(function(cb){ cb.addEventListener('change', apply); });
  apply();
})();
"""


def detect_page(items: list[dict], pictures: dict[str, str], folder: str, classes: list[str]) -> str:
    """The detect page for ``folder``: ``items`` are the detections JSON objects of the run (one
    per image: ``{"image": path, "detections": [{"box", "score", "label"}, ...]}``),
    ``pictures`` maps each image path to the picture detect drew for it, ``classes`` the
    model's class names (the filter's checkboxes)."""
    classes = [str(c) for c in classes]
    counts = {c: 0 for c in classes}
    for it in items:
        for d in it["detections"]:
            counts[str(d["label"])] = counts.get(str(d["label"]), 0) + 1
    n = sum(counts.values())
    title = f"detect: {len(items)} images, {n} detections"
    body = [f"<h1>{_e(title)}</h1>",
            '<div class="filter" id="filter"><strong>classes:</strong> '
            + "".join(f'<label><input type="checkbox" class="class-filter" value="{_e(c)}" checked> {_e(c)} '
                      f"({counts[c]})</label>" for c in counts)
            + "</div>"]
    for k, it in enumerate(items):
        path = str(it["image"])
        body += [f'<section class="image" id="image-{k + 1}">', f"<h2>{_e(os.path.basename(path))}</h2>",
                 f'<p class="meta">{_e(path)}: {len(it["detections"])} detections</p>']
        body.append('<div class="side">')
        if path in pictures:
            body.append(f'<img class="pic" src="{_src(pictures[path], folder)}" alt="{_e(os.path.basename(path))} '
                        f'with its detections">')
        if it["detections"]:
            body += ['<table class="detections">', '<thead><tr><th>#</th><th class="name">class</th><th>score</th>'
                     "<th>x1</th><th>y1</th><th>x2</th><th>y2</th></tr></thead>", "<tbody>"]
            for j, d in enumerate(it["detections"]):
                body.append(f'<tr data-class="{_e(d["label"])}"><td>{j + 1}</td><td class="name">{_e(d["label"])}</td>'
                            f'<td>{float(d["score"]):.3f}</td>'
                            + "".join(f"<td>{float(v):.0f}</td>" for v in d["box"]) + "</tr>")
            body += ["</tbody>", "</table>"]
        else:
            body.append('<p class="none">no detections</p>')
        body += ["</div>", "</section>"]
    return _doc(title, body, _FILTER_JS)


__all__ = ["PAGE_NAME", "analysis_page", "detect_page", "write_report_page"]
