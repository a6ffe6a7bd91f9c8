"""Make a synthetic ILSVRC DET layout of N tiny images, for the scale measurements (issue 15).

    python bench/make_synthetic_det.py OUT --images N [--val-images M] [--seed S]

Writes what :func:`detector.io.datasets.ilsvrc.read_ilsvrc` reads, in the real formats:
``Data/DET/<split>/<id>.JPEG`` (one small encoded JPEG, its bytes reused for every image),
``Annotations/DET/<split>/<id>.xml`` (VOC schema, WNIDs as names, 1-based boxes, the JPEG's
size), ``ImageSets/DET/<split>.txt`` (``<id> <index>`` lines; val's index column as the devkit),
``devkit/data/map_det.txt`` (the real 200 classes, copied from ``tests/data/ilsvrc``) and
``devkit/data/ILSVRC2015_det_validation_blacklist.txt`` (``image_index WNID`` lines). OUT must not
exist yet. Not done yet: the optional synthetic proposals in the proposal cache.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sys

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
MAP_DET = os.path.join(HERE, os.pardir, "tests", "data", "ilsvrc", "map_det.txt")
WIDTH, HEIGHT = 64, 48
BLACKLIST = os.path.join("devkit", "data", "ILSVRC2015_det_validation_blacklist.txt")

XML = """<annotation>
	<folder>{split}</folder>
	<filename>{image_id}</filename>
	<size>
		<width>{w}</width>
		<height>{h}</height>
	</size>
{objects}</annotation>
"""
OBJ = """	<object>
		<name>{name}</name>
		<bndbox>
			<xmin>{x0}</xmin>
			<xmax>{x1}</xmax>
			<ymin>{y0}</ymin>
			<ymax>{y1}</ymax>
		</bndbox>
	</object>
"""


def tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (120, 80, 40)).save(buf, format="JPEG", quality=50)
    return buf.getvalue()


def wnids(path: str = MAP_DET) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [ln.split()[0] for ln in f if ln.strip()]


def write_split(out: str, split: str, n: int, prefix: str, names: list[str], jpeg: bytes,
                rng: random.Random) -> list[tuple[int, str]]:
    """Write ``n`` images of ``split``; returns (image index, WNID) of every image's first object."""
    img_dir = os.path.join(out, "Data", "DET", split)
    ann_dir = os.path.join(out, "Annotations", "DET", split)
    os.makedirs(img_dir)
    os.makedirs(ann_dir)
    firsts, lines = [], []
    for i in range(1, n + 1):
        image_id = f"{prefix}_{i:08d}"
        with open(os.path.join(img_dir, image_id + ".JPEG"), "wb") as f:
            f.write(jpeg)
        objs = []
        for k in range(rng.randint(1, 3)):
            x0, y0 = rng.randint(1, WIDTH // 2), rng.randint(1, HEIGHT // 2)
            x1, y1 = rng.randint(x0 + 4, WIDTH), rng.randint(y0 + 4, HEIGHT)
            name = rng.choice(names)
            if k == 0:
                firsts.append((i, name))
            objs.append(OBJ.format(name=name, x0=x0, x1=x1, y0=y0, y1=y1))
        with open(os.path.join(ann_dir, image_id + ".xml"), "w", encoding="utf-8") as f:
            f.write(XML.format(split=split, image_id=image_id, w=WIDTH, h=HEIGHT, objects="".join(objs)))
        lines.append(f"{image_id} {i}\n")
    with open(os.path.join(out, "ImageSets", "DET", split + ".txt"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    return firsts


def make(out: str, images: int, val_images: int | None = None, seed: int = 0) -> None:
    if os.path.exists(out):
        raise SystemExit(f"make_synthetic_det.py: error: {out} exists already")
    rng = random.Random(seed)
    names, jpeg = wnids(), tiny_jpeg()
    os.makedirs(os.path.join(out, "ImageSets", "DET"))
    os.makedirs(os.path.join(out, "devkit", "data"))
    shutil.copyfile(MAP_DET, os.path.join(out, "devkit", "data", "map_det.txt"))
    write_split(out, "train", images, "ILSVRC2014_train", names, jpeg, rng)
    firsts = write_split(out, "val", val_images if val_images is not None else max(1, images // 10),
                         "ILSVRC2012_val", names, jpeg, rng)
    with open(os.path.join(out, BLACKLIST), "w", encoding="utf-8") as f:   # every 7th val image
        f.writelines(f"{i} {name}\n" for i, name in firsts[::7])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make_synthetic_det.py", description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--images", type=int, required=True, help="training images")
    ap.add_argument("--val-images", type=int, default=None, help="validation images (default images/10)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.images < 1:
        ap.error("--images must be >= 1")
    make(a.out, a.images, a.val_images, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
