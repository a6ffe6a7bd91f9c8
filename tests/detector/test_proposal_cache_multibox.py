"""The proposal cache's MultiBox paths (methods ss+multibox and multibox) and max_total."""

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backbone.errors import UserError
from detector.cli.propose import main as propose_main
from detector.datasets import load_dataset
from detector.images import load_image
from detector.schema import DataConfig
from proposals.config import MultiBoxConfig, ProposalConfig
from proposals.multibox import MultiBox, checkpoint_dict, kmeans_priors, predict

runner = importlib.import_module("detector.proposal_runner")
MINI = Path(__file__).resolve().parent.parent / "data" / "voc-mini"
TINY = MultiBoxConfig(arch="googlenet_bn", input_size=64, num_priors=12)
TOP_K = 6


def _net(seed: int) -> MultiBox:
    """An untrained MultiBox (different seeds: different weights and priors)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 0.6, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.15, 0.4, (60, 2))], 1)
    return MultiBox(TINY, kmeans_priors(boxes, TINY.num_priors, seed=seed)).eval()


@pytest.fixture(scope="module")
def nets():
    return _net(0), _net(1)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(DataConfig(format="voc", root=str(MINI), classes=["Platelets", "RBC", "WBC"]), "train")


def _save(net, path):
    torch.save(checkpoint_dict(net), path)
    return str(path)


def _cfg(ckpt, **kw):
    kw.setdefault("method", "ss+multibox")
    return ProposalConfig(multibox_checkpoint=ckpt, multibox_top_k=TOP_K, superpixel_scale=1.0, working_width=160, **kw)


def _spy_ss(monkeypatch):
    calls = []
    real = runner.selective_search
    monkeypatch.setattr(runner, "selective_search", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _dirs(cache):
    return sorted(p.name for p in (cache / "proposals").iterdir())


def test_ss_multibox_cache_shares_selective_search(nets, dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ckpt = _save(nets[0], tmp_path / "mb.pt")
    calls = _spy_ss(monkeypatch)
    boxes = runner.ensure_proposals(dataset, _cfg(ckpt), cache_dir=str(cache), workers=1)
    assert len(calls) == len(dataset.records) == 2
    ss_only = runner.ensure_proposals(dataset, _cfg(ckpt, method="ss"), cache_dir=str(cache), workers=1)
    assert len(calls) == 2  # method ss reads the folder ss+multibox filled
    dirs = _dirs(cache)
    assert len(dirs) == 2 and dirs[0].startswith("ss-") and dirs[1].startswith("ss_multibox-")
    for rec, merged, ss in zip(dataset.records, boxes, ss_only):
        image = load_image(rec.path)
        mb = predict(nets[0], [image], top_k=TOP_K)[0][0]
        # the merged list begins with the MultiBox boxes, then selective search in rank order
        assert np.allclose(merged[:TOP_K], mb, atol=1e-2)
        ss_rows = {tuple(r) for r in ss.tolist()}
        assert all(tuple(r) in ss_rows for r in merged[TOP_K:].tolist())
        assert len(merged) <= TOP_K + len(ss)
        assert (merged[:, 2] <= rec.width + 1e-3).all() and (merged[:, 3] <= rec.height + 1e-3).all()

    # another checkpoint written over the same file: a new folder, the new network's boxes,
    # and no selective search at all (its folder is shared)
    ckpt2 = _save(nets[1], tmp_path / "mb.pt")
    again = runner.ensure_proposals(dataset, _cfg(ckpt2), cache_dir=str(cache), workers=1)
    assert len(calls) == 2
    dirs2 = _dirs(cache)
    assert len(dirs2) == 3 and set(dirs) < set(dirs2)
    for rec, merged, old in zip(dataset.records, again, boxes):
        mb2 = predict(nets[1], [load_image(rec.path)], top_k=TOP_K)[0][0]
        assert np.allclose(merged[:TOP_K], mb2, atol=1e-2) and not np.allclose(merged[:TOP_K], old[:TOP_K])
    settings = json.loads((cache / "proposals" / (set(dirs2) - set(dirs)).pop() / "settings.json").read_text())
    assert settings["multibox_hash"] == runner.file_hash(ckpt2)
    # the first checkpoint again: its folder is read, nothing is computed
    monkeypatch.setattr(runner, "selective_search", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ss rerun")))
    _save(nets[0], tmp_path / "mb.pt")
    monkeypatch.setattr("proposals.multibox.predict", lambda *a, **k: (_ for _ in ()).throw(AssertionError("mb rerun")))
    back = runner.ensure_proposals(dataset, _cfg(ckpt), cache_dir=str(cache), workers=1)
    assert all(np.array_equal(a, b) for a, b in zip(back, boxes))


def test_multibox_only_method(nets, dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ckpt = _save(nets[0], tmp_path / "mb.pt")
    calls = _spy_ss(monkeypatch)
    boxes, secs = runner.ensure_proposals(dataset, _cfg(ckpt, method="multibox"), cache_dir=str(cache),
                                          with_seconds=True)
    assert calls == [] and _dirs(cache)[0].startswith("multibox-") and len(_dirs(cache)) == 1
    for rec, b, s in zip(dataset.records, boxes, secs):
        assert np.allclose(b, predict(nets[0], [load_image(rec.path)], top_k=TOP_K)[0][0], atol=1e-2) and s > 0
    # an already loaded network instead of the checkpoint: keyed by its weights
    loaded = runner.ensure_proposals(dataset, _cfg(None, method="multibox"), cache_dir=str(cache), multibox=nets[1])
    assert len(_dirs(cache)) == 2 and not np.allclose(loaded[0], boxes[0])


def test_max_total_caps_the_merged_union(nets, dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ckpt = _save(nets[0], tmp_path / "mb.pt")
    full = runner.ensure_proposals(dataset, _cfg(ckpt), cache_dir=str(cache), workers=1)
    calls = _spy_ss(monkeypatch)
    capped = runner.ensure_proposals(dataset, _cfg(ckpt, max_total=10), cache_dir=str(cache), workers=1)
    assert calls == []  # the uncapped selective search folder is reused
    assert all(len(c) == 10 and np.array_equal(c, f[:10]) for c, f in zip(capped, full))
    assert len(_dirs(cache)) == 3  # ss, ss+multibox, ss+multibox capped
    # method ss with a cap: its own folder, selective search still not rerun
    ss_capped = runner.ensure_proposals(dataset, _cfg(ckpt, method="ss", max_total=7), cache_dir=str(cache))
    assert calls == [] and all(len(b) == 7 for b in ss_capped) and len(_dirs(cache)) == 4
    # in the key when set; the uncapped keys did not change
    base = _cfg(ckpt)
    assert len({runner.cache_key(base, "h"), runner.cache_key(_cfg(ckpt, max_total=10), "h"),
                runner.cache_key(_cfg(ckpt, max_total=11), "h")}) == 3
    assert runner.cache_key(ProposalConfig(method="ss")) == "ss-" + runner._hash({"method": "ss", "ss": runner.ss_settings(ProposalConfig())})
    # a cap larger than the list keeps everything
    big = runner.ensure_proposals(dataset, _cfg(ckpt, max_total=100000), cache_dir=str(cache))
    assert all(np.array_equal(a, b) for a, b in zip(big, full))
    for bad in (0, -3, 2.5, "ten"):
        with pytest.raises(UserError, match="max_total"):
            runner.ensure_proposals(dataset, _cfg(ckpt, max_total=bad), cache_dir=str(cache))


def test_propose_cli_ss_multibox_json_in_original_pixels(nets, tmp_path, capsys):
    image_path = MINI / "JPEGImages" / "BloodImage_00000.jpg"
    ckpt = _save(nets[0], tmp_path / "mb.pt")
    out = tmp_path / "p.json"
    assert propose_main([str(image_path), "--method", "ss+multibox", "--multibox", ckpt, "--working-width", "160",
                         "--set", f"multibox_top_k={TOP_K}", "--json", str(out)]) == 0
    assert "BloodImage_00000.jpg:" in capsys.readouterr().out
    (item,) = json.loads(out.read_text())
    b = np.array(item["boxes"])
    image = load_image(str(image_path))
    H, W = image.shape[:2]
    mb = predict(nets[0], [image], top_k=TOP_K)[0][0]
    assert np.allclose(b[:TOP_K], mb, atol=0.01)  # MultiBox first, in the original image's pixels
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= W).all() and (b[:, 3] <= H).all()
    assert b[TOP_K:, 2].max() > 0.9 * W  # selective search ran at 160 px, boxes came back at 640
    # --max-total caps the merged list
    assert propose_main([str(image_path), "--method", "ss+multibox", "--multibox", ckpt, "--working-width", "160",
                         "--set", f"multibox_top_k={TOP_K}", "--max-total", "9", "--json", str(out)]) == 0
    assert np.allclose(json.loads(out.read_text())[0]["boxes"], b[:9])
