"""propose: boxes of images (selective search, ss+multibox) in the original pixels as JSON, a
split into the cache, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from detector.cli.propose import main as propose_main
from detector.io.images import load_image
from proposals.multibox import predict
from tests.conftest import TEST_DATA
from tests.detector.helpers import MULTIBOX_TOP_K, save_multibox

MINI = TEST_DATA / "voc-mini"
IMAGE = TEST_DATA / "proposals" / "BloodImage_00000.jpg"
FAST = ["--set", "proposals.working_width=160"]


def test_propose_images_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert propose_main([str(IMAGE), "--working-width", "200", "--superpixel-scale", "2", "--json", str(out)]) == 0
    assert "BloodImage_00000.jpg:" in capsys.readouterr().out
    items = json.loads(out.read_text())
    assert len(items) == 1 and items[0]["image"] == str(IMAGE) and items[0]["seconds"] > 0
    b = np.array(items[0]["boxes"])
    assert b.shape[1] == 4 and len(b) > 10
    assert b[:, 2].max() <= 640 and b[:, 3].max() <= 480 and b[:, 2].max() > 600  # original pixels


@pytest.mark.parametrize("argv, msg", [
    (["missing.jpg"], "missing.jpg"),
    (["--split", "test"], "--split needs --config"),
    ([], "give image files"),
    ([str(IMAGE), "--method", "multibox"], "multibox_checkpoint"),
    ([str(IMAGE), "--multibox", "nothere.pt", "--method", "multibox"], "nothere.pt"),
    ([str(IMAGE), "--working-width", "100000"], "proposals.working_width must be in [0, 2000], got 100000"),  # 22 GB
])
def test_propose_errors(argv, msg, capsys):
    assert propose_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("propose: error:") and msg in err and err.count("\n") == 1


def test_propose_split_fills_the_cache(mini_config, tmp_path, capsys):
    cache = tmp_path / "cache"
    out = tmp_path / "split.json"
    assert propose_main(["--config", mini_config, "--split", "train", "--cache-dir", str(cache), "--workers", "2",
                         "--json", str(out)] + FAST) == 0
    assert "train: 2 images" in capsys.readouterr().out
    items = json.loads(out.read_text())
    assert [Path(i["image"]).name for i in items] == ["BloodImage_00000.jpg", "BloodImage_00338.jpg"]
    assert len(list((cache / "proposals").glob("*/*.npz"))) == 2


def test_propose_cli_ss_multibox_json_in_original_pixels(multibox_nets, tmp_path, capsys):
    image_path = MINI / "JPEGImages" / "BloodImage_00000.jpg"
    ckpt = save_multibox(multibox_nets[0], tmp_path / "mb.pt")
    out = tmp_path / "p.json"
    assert propose_main([str(image_path), "--method", "ss+multibox", "--multibox", ckpt, "--working-width", "160",
                         "--set", f"multibox_top_k={MULTIBOX_TOP_K}", "--json", str(out)]) == 0
    assert "BloodImage_00000.jpg:" in capsys.readouterr().out
    (item,) = json.loads(out.read_text())
    b = np.array(item["boxes"])
    image = load_image(str(image_path))
    H, W = image.shape[:2]
    mb = predict(multibox_nets[0], [image], top_k=MULTIBOX_TOP_K)[0][0]
    assert np.allclose(b[:MULTIBOX_TOP_K], mb, atol=0.01)  # MultiBox first, in the original image's pixels
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= W).all() and (b[:, 3] <= H).all()
    assert b[MULTIBOX_TOP_K:, 2].max() > 0.9 * W  # selective search ran at 160 px, boxes came back at 640
    # --max-total caps the merged list
    assert propose_main([str(image_path), "--method", "ss+multibox", "--multibox", ckpt, "--working-width", "160",
                         "--set", f"multibox_top_k={MULTIBOX_TOP_K}", "--max-total", "9", "--json", str(out)]) == 0
    assert np.allclose(json.loads(out.read_text())[0]["boxes"], b[:9])
