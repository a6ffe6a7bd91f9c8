"""Convert a PASCAL VOC dataset (ImageSets/Main) into the other layouts ``data.format: auto`` reads.

    python bench/convert_layout.py VOC_ROOT OUT --to voc_xml|voc_xml_flat|yolo|coco [--link]

- ``voc_xml``: ``OUT/<split>/images/`` + ``OUT/<split>/annotations/`` (the XML files copied as
  they are), one folder per split of ``ImageSets/Main`` (train, val, test), so the split is
  the same list; ``voc_xml_flat``: LabelImg's ``OUT/images/`` + ``OUT/annotations/``, no split
  (the reader then writes its fixed-seed split);
- ``yolo``: ``OUT/images/<split>/`` + ``OUT/labels/<split>/`` (``class cx cy w h`` normalised,
  6 decimals as ultralytics writes) and ``OUT/data.yaml`` (``path: .``, ``train/val/test``, ``names``);
- ``coco``: ``OUT/annotations/instances_<split>.json`` + ``OUT/<split>/`` images (bbox x y w h in
  continuous pixels; difficult -> iscrowd).

Images are copied (``--link``: symlinked, for a full dataset). OUT must not exist yet. Used to make
``tests/data/layouts/`` and to measure the layouts on the full BCCD.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import yaml

from backbone.io import write_json, write_text
from detector.io.datasets import read_voc

SPLITS = ("train", "val", "test")


def _put_image(src: str, dst: str, link: bool) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if link:
        os.symlink(os.path.abspath(src), dst)
    else:
        shutil.copy2(src, dst)


def convert(voc_root: str, out: str, to: str, link: bool = False) -> None:
    if os.path.exists(out):
        raise SystemExit(f"convert_layout: {out} exists; give a new folder")
    splits = [s for s in SPLITS if os.path.isfile(os.path.join(voc_root, "ImageSets", "Main", s + ".txt"))]
    datasets = {s: read_voc(voc_root, s) for s in splits}
    classes = datasets[splits[0]].classes
    if to == "yolo":
        write_text(os.path.join(out, "data.yaml"), yaml.safe_dump(
            {"path": ".", **{s: f"images/{s}" for s in splits}, "names": dict(enumerate(classes))}, sort_keys=False),
            what="data.yaml")
    for s, ds in datasets.items():
        coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)]}
        for k, r in enumerate(ds.records):
            name = os.path.basename(r.path)
            if to in ("voc_xml", "voc_xml_flat"):
                base = out if to == "voc_xml_flat" else os.path.join(out, s)
                _put_image(r.path, os.path.join(base, "images", name), link)
                os.makedirs(os.path.join(base, "annotations"), exist_ok=True)
                shutil.copy2(os.path.join(voc_root, "Annotations", r.image_id + ".xml"),
                             os.path.join(base, "annotations", r.image_id + ".xml"))
            elif to == "yolo":
                _put_image(r.path, os.path.join(out, "images", s, name), link)
                lines = []
                for b, lab in zip(r.boxes.astype(float), r.labels):
                    cx, cy = (b[0] + b[2]) / 2 / r.width, (b[1] + b[3]) / 2 / r.height
                    w, h = (b[2] - b[0]) / r.width, (b[3] - b[1]) / r.height
                    lines.append(f"{lab - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
                write_text(os.path.join(out, "labels", s, r.image_id + ".txt"), "".join(lines), what="label file")
            elif to == "coco":
                _put_image(r.path, os.path.join(out, s, name), link)
                coco["images"].append({"id": k + 1, "file_name": name, "width": r.width, "height": r.height})
                for b, lab, d in zip(r.boxes.astype(float), r.labels, r.difficult):
                    coco["annotations"].append({
                        "id": len(coco["annotations"]) + 1, "image_id": k + 1, "category_id": int(lab),
                        "bbox": [round(b[0], 3), round(b[1], 3), round(b[2] - b[0], 3), round(b[3] - b[1], 3)],
                        "area": round((b[2] - b[0]) * (b[3] - b[1]), 3), "iscrowd": int(d)})
            else:
                raise SystemExit(f"convert_layout: --to {to!r}: unknown")
        if to == "coco":
            write_json(os.path.join(out, "annotations", f"instances_{s}.json"), coco)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("voc_root")
    p.add_argument("out")
    p.add_argument("--to", required=True, choices=["voc_xml", "voc_xml_flat", "yolo", "coco"])
    p.add_argument("--link", action="store_true", help="symlink the images instead of copying them")
    a = p.parse_args(argv)
    convert(a.voc_root, a.out, a.to, a.link)
    print(a.out, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
