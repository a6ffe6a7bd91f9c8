"""detector.proposal_cache: the proposals of a split on disk: keys (settings, MultiBox weights,
max_total), resume after a kill, workers, the default folder, selective search shared between
methods ss and ss+multibox, method multibox."""

import importlib
import json

import numpy as np
import pytest

from backbone.errors import UserError
from detector.config import DataConfig, load_detector_config
from detector.io.datasets import load_dataset
from detector.io.images import load_image
from proposals.config import ProposalConfig
from proposals.multibox import predict
from tests.conftest import TEST_DATA
from tests.detector.helpers import MULTIBOX_TOP_K, save_multibox

runner = importlib.import_module("detector.proposal_cache")
MINI = TEST_DATA / "voc-mini"


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(DataConfig(format="voc", root=str(MINI), classes=["Platelets", "RBC", "WBC"]), "train")


def _cfg(ckpt, **kw):
    kw.setdefault("method", "ss+multibox")
    return ProposalConfig(multibox_checkpoint=ckpt, multibox_top_k=MULTIBOX_TOP_K, superpixel_scale=1.0, working_width=160, **kw)


def _spy_ss(monkeypatch):
    calls = []
    real = runner.selective_search
    monkeypatch.setattr(runner, "selective_search", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _dirs(cache):
    return sorted(p.name for p in (cache / "proposals").iterdir())


def test_ss_multibox_cache_shares_selective_search(multibox_nets, dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ckpt = save_multibox(multibox_nets[0], tmp_path / "mb.pt")
    calls = _spy_ss(monkeypatch)
    boxes = runner.ensure_proposals(dataset, _cfg(ckpt), cache_dir=str(cache), workers=1)
    assert len(calls) == len(dataset.records) == 2
    ss_only = runner.ensure_proposals(dataset, _cfg(ckpt, method="ss"), cache_dir=str(cache), workers=1)
    assert len(calls) == 2  # method ss reads the folder ss+multibox filled
    dirs = _dirs(cache)
    assert len(dirs) == 2 and dirs[0].startswith("ss-") and dirs[1].startswith("ss_multibox-")
    for rec, merged, ss in zip(dataset.records, boxes, ss_only):
        image = load_image(rec.path)
        mb = predict(multibox_nets[0], [image], top_k=MULTIBOX_TOP_K)[0][0]
        # the merged list begins with the MultiBox boxes, then selective search in rank order
        assert np.allclose(merged[:MULTIBOX_TOP_K], mb, atol=1e-2)
        ss_rows = {tuple(r) for r in ss.tolist()}
        assert all(tuple(r) in ss_rows for r in merged[MULTIBOX_TOP_K:].tolist())
        assert len(merged) <= MULTIBOX_TOP_K + len(ss)
        assert (merged[:, 2] <= rec.width + 1e-3).all() and (merged[:, 3] <= rec.height + 1e-3).all()

    # another checkpoint written over the same file: a new folder, the new network's boxes,
    # and no selective search at all (its folder is shared)
    ckpt2 = save_multibox(multibox_nets[1], tmp_path / "mb.pt")
    again = runner.ensure_proposals(dataset, _cfg(ckpt2), cache_dir=str(cache), workers=1)
    assert len(calls) == 2
    dirs2 = _dirs(cache)
    assert len(dirs2) == 3 and set(dirs) < set(dirs2)
    for rec, merged, old in zip(dataset.records, again, boxes):
        mb2 = predict(multibox_nets[1], [load_image(rec.path)], top_k=MULTIBOX_TOP_K)[0][0]
        assert np.allclose(merged[:MULTIBOX_TOP_K], mb2, atol=1e-2) and not np.allclose(merged[:MULTIBOX_TOP_K], old[:MULTIBOX_TOP_K])
    settings = json.loads((cache / "proposals" / (set(dirs2) - set(dirs)).pop() / "settings.json").read_text())
    assert settings["multibox_hash"] == runner.file_hash(ckpt2)
    # the first checkpoint again: its folder is read, nothing is computed
    monkeypatch.setattr(runner, "selective_search", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ss rerun")))
    save_multibox(multibox_nets[0], tmp_path / "mb.pt")
    monkeypatch.setattr("proposals.multibox.predict", lambda *a, **k: (_ for _ in ()).throw(AssertionError("mb rerun")))
    back = runner.ensure_proposals(dataset, _cfg(ckpt), cache_dir=str(cache), workers=1)
    assert all(np.array_equal(a, b) for a, b in zip(back, boxes))


def test_multibox_only_method(multibox_nets, dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ckpt = save_multibox(multibox_nets[0], tmp_path / "mb.pt")
    calls = _spy_ss(monkeypatch)
    boxes, secs = runner.ensure_proposals(dataset, _cfg(ckpt, method="multibox"), cache_dir=str(cache),
                                          with_seconds=True)
    assert calls == [] and _dirs(cache)[0].startswith("multibox-") and len(_dirs(cache)) == 1
    for rec, b, s in zip(dataset.records, boxes, secs):
        assert np.allclose(b, predict(multibox_nets[0], [load_image(rec.path)], top_k=MULTIBOX_TOP_K)[0][0], atol=1e-2) and s > 0
    # an already loaded network instead of the checkpoint: keyed by its weights
    loaded = runner.ensure_proposals(dataset, _cfg(None, method="multibox"), cache_dir=str(cache), multibox=multibox_nets[1])
    assert len(_dirs(cache)) == 2 and not np.allclose(loaded[0], boxes[0])


def test_max_total_caps_the_merged_union(multibox_nets, dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ckpt = save_multibox(multibox_nets[0], tmp_path / "mb.pt")
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


def test_cache_keys_resume_and_workers(mini_config, tmp_path, monkeypatch):
    cfg = load_detector_config(mini_config, ["proposals.working_width=160"])
    ds = load_dataset(cfg.data, "train")
    cache = str(tmp_path / "c")
    first = runner.ensure_proposals(ds, cfg.proposals, cache_dir=cache, workers=2)
    assert len(first) == len(ds.records) == 2
    # a killed run: one file missing -> only that one is computed again
    files = sorted((tmp_path / "c" / "proposals").glob("*/*.npz"))
    files[0].unlink()
    calls = []
    real = runner.selective_search
    monkeypatch.setattr(runner, "selective_search", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = runner.ensure_proposals(ds, cfg.proposals, cache_dir=cache, workers=1)
    assert len(calls) == 1 and all(np.array_equal(a, b) for a, b in zip(first, again))
    # another setting -> another folder, never stale boxes
    cfg.proposals.superpixel_scale = 2.0
    two = runner.ensure_proposals(ds, cfg.proposals, cache_dir=cache, workers=1)
    assert len(list((tmp_path / "c" / "proposals").iterdir())) == 2
    assert sum(map(len, two)) < sum(map(len, first))
    assert runner.cache_key(cfg.proposals) != runner.cache_key(load_detector_config(mini_config).proposals)


def test_cache_dir_defaults_and_refuses_the_dataset_folder(mini_config, monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLENET_DET_CACHE", raising=False)  # (the tests set their own)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runner._default_cache_dir() == str(tmp_path / "xdg" / "googlenet-det")
    cfg = load_detector_config(mini_config)
    ds = load_dataset(cfg.data, "train")
    with pytest.raises(UserError, match="inside the dataset folder"):
        runner.ensure_proposals(ds, cfg.proposals, cache_dir=str(MINI / "cache"))
    assert not (MINI / "cache").exists()


def test_multibox_cache_key_uses_the_weights(tmp_path):
    from proposals.config import ProposalConfig

    cfg = ProposalConfig(method="ss+multibox")
    assert runner.cache_key(cfg, "aaaa") != runner.cache_key(cfg, "bbbb")
    cfg2 = ProposalConfig(method="ss+multibox", multibox_top_k=100)
    assert runner.cache_key(cfg, "aaaa") != runner.cache_key(cfg2, "aaaa")


# --- damaged cache files (issue 20, h4): recomputed with one warning, never used, never a traceback


def _nan_boxes(path):
    np.savez(path, boxes=np.array([[0, 0, 5, 5], [np.nan, 1, 2, 3]], np.float32), seconds=np.float64(1))


def _inf_boxes(path):
    np.savez(path, boxes=np.array([[0, 0, np.inf, 5]], np.float32), seconds=np.float64(1))


def _wrong_shape(path):
    np.savez(path, boxes=np.zeros((3, 5), np.float32), seconds=np.float64(1))


def _text_boxes(path):
    np.savez(path, boxes=np.array([["a", "b", "c", "d"]]), seconds=np.float64(1))


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # was zipfile.BadZipFile


def _not_npz(path):
    path.write_bytes(b"just some bytes, no zip at all")


@pytest.mark.parametrize("damage", [_nan_boxes, _inf_boxes, _wrong_shape, _text_boxes, _truncated, _not_npz])
@pytest.mark.parametrize("strict", [False, True])
def test_a_damaged_cache_file_is_recomputed_with_one_warning(mini_config, tmp_path, monkeypatch, damage, strict):
    import warnings

    from backbone.errors import InputWarning

    cfg = load_detector_config(mini_config, ["proposals.working_width=160"])
    ds = load_dataset(cfg.data, "train")
    cache = str(tmp_path / "c")
    first = [b.copy() for b in runner.ensure_proposals(ds, cfg.proposals, cache_dir=cache, workers=1)]
    files = sorted((tmp_path / "c" / "proposals").glob("*/*.npz"))
    damage(files[0])
    calls = _spy_ss(monkeypatch)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        if strict:  # --strict: our own cache is no input of the user's, recomputed all the same
            warnings.simplefilter("error", InputWarning)
        again = runner.ensure_proposals(ds, cfg.proposals, cache_dir=cache, workers=1)
    ours = [w for w in seen if issubclass(w.category, runner.ProposalCacheWarning)]
    assert len(ours) == 1 and len(seen) == 1, [str(w.message) for w in seen]
    assert str(ours[0].message).startswith("proposal cache: 1 damaged file recomputed") and files[0].name in str(ours[0].message)
    assert len(calls) == 1
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert all(np.isfinite(b).all() for b in again)
