"""What an analysis result says, without writing a file: the text summary
(:func:`summary_lines`) and the figures of the report (:func:`report_figures`, matplotlib Figures
named by file); ``detector.io.figures.write_report`` writes them."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from .. import analysis_plots as P
from .sensitivity import image_path
from .tide import TIDE_MAIN, TIDE_SPECIAL


def lowest_ap_classes(result: dict, k: int = 5) -> list[str]:
    """The ``k`` classes with ground truth and the lowest AP (ties in class order)."""
    valid = [(a, i) for i, a in enumerate(result["AP"]) if a is not None]
    return [result["classes"][i] for a, i in sorted(valid)[:k]]


def summary_lines(result: dict) -> list[str]:
    """A short text summary: mAP, then a table of TIDE's dAP per error type for all classes and for
    each class (fractions of 1, like mAP), with each row's largest error type and Hoiem's false
    positive shares among its first npos detections."""
    tide, hoiem = result["tide"], result["hoiem"]
    t = result["iou"]
    n_valid = sum(1 for a in result["AP"] if a is not None)
    lines = [(f"error analysis ({result['protocol']}, IoU {result['iou_protocol']}): mAP {_fmt(result['mAP'])} "
              f"over {n_valid} classes with ground truth; errors at IoU {t:g} (mAP there {_fmt(tide['mAP'])})"),
             ("TIDE dAP: AP gained by fixing each error type alone (fractions of 1, like mAP); "
              "Hoiem: false-positive types among the top npos detections")]
    width = max([len(c) for c in result["classes"]] + [len("all classes")])
    lines.append(f"{'class':<{width}}  {'AP@' + format(t, 'g'):>6}" + "".join(f"{n:>8}" for n in TIDE_MAIN)
                 + "".join(f"{n:>10}" for n in TIDE_SPECIAL) + "  largest (dAP)    Hoiem")

    def row(name, ap, d, h):
        big = d["largest"]
        err = f"{big} ({_fmt(d['dAP'][big])})" if big else "none"
        fps = (h or {}).get("fp_shares_at_npos", {})
        hs = " ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(fps.items(), key=lambda kv: -kv[1]) if v > 0)
        return (f"{name:<{width}}  {_fmt(ap)}" + "".join(f"  {_fmt(d['dAP'][n])}" for n in TIDE_MAIN)
                + "".join(f"    {_fmt(d['special'][n])}" for n in TIDE_SPECIAL) + f"  {err:<15}  {hs or '-'}")

    lines.append(row("all classes", tide["mAP"], tide, hoiem["all"]))
    for c, name in enumerate(result["classes"]):
        pc = tide["per_class"].get(name)
        if pc is None:
            lines.append(f"{name:<{width}}       -  (no ground truth)")
        else:
            lines.append(row(name, pc["AP"], pc, hoiem["per_class"].get(name)))
    return lines


def _fmt(x):
    return "   nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def safe_name(name: str) -> str:
    """``name`` as a file-name part (letters, digits, ``._-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def report_figures(result: dict, classes: list[str], all_classes: bool = False,
                   image_paths: list[str] | None = None, gts: list[dict] | None = None,
                   dets: list[dict] | None = None) -> Iterator[tuple[str, object]]:
    """The figures of the report on ``result``, one at a time as (file name, matplotlib Figure):
    for all classes together and the 5 lowest-AP classes (``all_classes``: every class with
    ground truth) a Hoiem false-positive plot, a COCO PR stack and a TIDE dAP chart; one
    sensitivity chart and one confusion matrix; a gallery per shown class when image paths are
    known (``image_paths``, else those in ``result``) and one of its images could be read;
    ``gts`` / ``dets`` (as given to :func:`eval.analysis.analyze`) add the objects and detections
    around each gallery crop."""
    classes = list(classes)
    shown = [c for c in classes if c in result["tide"]["per_class"]] if all_classes else lowest_ap_classes(result, 5)
    label = f"{result['protocol']}, IoU {result['iou']:g}"
    for subject in ["all"] + shown:
        fname = "all" if subject == "all" else safe_name(subject)
        title = "all classes" if subject == "all" else subject
        h = result["hoiem"]["all"] if subject == "all" else result["hoiem"]["per_class"][subject]
        yield f"hoiem_{fname}.png", P.plot_hoiem(h, result["hoiem"]["factors"], f"{title} ({label})")
        s = result["coco_stack"]["all"] if subject == "all" else result["coco_stack"]["per_class"][subject]
        yield f"coco_stack_{fname}.png", P.plot_stack(s, result["coco_stack"]["recall"], f"{title} ({result['protocol']})")
        td = result["tide"] if subject == "all" else result["tide"]["per_class"][subject]
        yield f"tide_{fname}.png", P.plot_tide(td, f"{title} ({label})")
    yield "sensitivity.png", P.plot_sensitivity(result, ["all"] + shown)
    yield "confusion.png", P.plot_confusion(result["confusion"], f"confusion ({label})")
    for name in shown:
        g = result["gallery"].get(name)
        if not g:
            continue
        items_fp = [dict(it, path=image_path(image_paths, it["image"]) if image_paths is not None else it["path"])
                    for it in g["false_positives"]]
        items_miss = [dict(it, path=image_path(image_paths, it["image"]) if image_paths is not None else it["path"])
                      for it in g["missed"]]
        if not any(it["path"] for it in items_fp + items_miss):
            continue
        fig = P.plot_gallery(items_fp, items_miss, name, classes, gts=gts, dets=dets,
                             score_thr=result["f1"].get(name, {}).get("score"))
        if fig is not None:
            yield f"gallery_{safe_name(name)}.png", fig
