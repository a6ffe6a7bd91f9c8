"""Make the BCCD test fixture of tests/eval/test_analysis.py (see README.md here).

    python tests/data/analysis/make_fixture.py DETECTIONS.json [--data-root ../shared/data/bccd] [--split test]

DETECTIONS.json: the project's detections JSON (`eval-map --save-detections`, one object per image
``{"image": path, "detections": [{"box": [x1, y1, x2, y2], "score": s, "label": name}]}``).
Writes, next to this file:

- ``bccd_test_gt.json``: the split's ground truth as COCO instances. Boxes as the project's VOC
  reader makes them (x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax; degenerate boxes dropped,
  boxes clipped to the image), written as COCO ``[x, y, w, h]`` with ``area = w * h``,
  ``iscrowd`` = VOC ``difficult``, a rectangle ``segmentation`` (tidecv reads one per object);
  category ids 1..3 in the config's class order (Platelets, RBC, WBC), image ids 1..N in split order.
- ``bccd_test_results.json``: the detections as COCO results, the 100 best per image (COCO's
  limit; tidecv keeps 100 per image, COCOeval 100 per image and class), boxes rounded to 0.01 px
  and scores to 1e-6 (the file stays small; no two scores of an image tie after rounding).

Standard library only, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["Platelets", "RBC", "WBC"]


def voc_objects(xml_path):
    root = ET.parse(xml_path).getroot()
    size = root.find("size")
    W, H = float(size.findtext("width")), float(size.findtext("height"))
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        if xmax <= xmin or ymax <= ymin:          # degenerate: dropped, as the project's reader
            continue
        x1, y1 = min(max(xmin - 1, 0.0), W), min(max(ymin - 1, 0.0), H)
        x2, y2 = min(max(xmax, 0.0), W), min(max(ymax, 0.0), H)
        if x2 <= x1 or y2 <= y1:
            continue
        out.append((obj.findtext("name").strip(), [x1, y1, x2, y2], int(obj.findtext("difficult") or 0)))
    return W, H, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("detections")
    p.add_argument("--data-root", default=os.path.join(HERE, "..", "..", "..", "..", "shared", "data", "bccd"))
    p.add_argument("--split", default="test")
    a = p.parse_args(argv)
    with open(os.path.join(a.data_root, "ImageSets", "Main", f"{a.split}.txt")) as fh:
        ids = [ln.strip() for ln in fh if ln.strip()]
    images, anns = [], []
    for k, stem in enumerate(ids, start=1):
        W, H, objs = voc_objects(os.path.join(a.data_root, "Annotations", stem + ".xml"))
        images.append({"id": k, "file_name": f"JPEGImages/{stem}.jpg", "width": int(W), "height": int(H)})
        for name, (x1, y1, x2, y2), diff in objs:
            w, h = x2 - x1, y2 - y1
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": CLASSES.index(name) + 1,
                         "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": diff,
                         "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]})
    cats = [{"id": i + 1, "name": n, "supercategory": "blood cell"} for i, n in enumerate(CLASSES)]
    image_id = {stem: k for k, stem in enumerate(ids, start=1)}
    results = []
    with open(a.detections) as fh:
        entries = json.load(fh)
    for entry in entries:
        stem = os.path.splitext(os.path.basename(entry["image"]))[0]
        if stem not in image_id:
            continue
        dets = sorted(entry["detections"], key=lambda d: -d["score"])[:100]
        for d in dets:
            x1, y1, x2, y2 = (round(float(v), 2) for v in d["box"])
            results.append({"image_id": image_id[stem], "category_id": CLASSES.index(d["label"]) + 1,
                            "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(float(d["score"]), 6)})
    with open(os.path.join(HERE, "bccd_test_gt.json"), "w") as f:
        json.dump({"info": {"description": f"BCCD {a.split} split as COCO instances (tests/data/analysis/README.md)"},
                   "images": images, "annotations": anns, "categories": cats}, f, separators=(",", ":"))
    with open(os.path.join(HERE, "bccd_test_results.json"), "w") as f:
        json.dump(results, f, separators=(",", ":"))
    print(f"{len(images)} images, {len(anns)} objects, {len(results)} detections")


if __name__ == "__main__":
    main()
