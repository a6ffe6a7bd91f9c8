"""eval-map: the published sample numbers, every protocol, split mode (patched and with a tiny
trained model), class lists of config and model, bad usage. The readers of each file format
are tested in tests/detector/io/ (test_detections.py, datasets/test_*.py)."""

import json

import numpy as np
import pytest
import torch

from detector.io.datasets import load_dataset
from tests.detector.helpers import (
    coco_eval_files,
    eval_map_error,
    jittered_proposals,
    run_eval_map,
    tiny_config,
    train_given,
    untrained_detector,
)


@pytest.mark.parametrize("protocol, ap", [("voc", 0.2457), ("voc07", 0.2684)])
def test_published_sample_numbers(sample, tmp_path, capsys, protocol, ap):
    out_json = tmp_path / "m.json"
    rc, out, err = run_eval_map(capsys, "--protocol", protocol, "--ground-truth", sample / "groundtruths",
                        "--detections", sample / "detections", "--iou", "0.3", "--box-format", "xywh",
                        "--json", out_json, "--plots", tmp_path / "plots")
    assert rc == 0, err
    r = json.loads(out_json.read_text())
    assert abs(r["mAP"] - ap) <= 1e-4
    assert r["per_class_AP"]["person"] == r["mAP"] and r["npos"] == [15] and r["num_detections"] == [24]
    assert f"{ap:.4f}" in out and "person" in out
    assert (tmp_path / "plots" / f"pr_{protocol}.png").stat().st_size > 1000
    assert "warning" not in err   # no degenerate boxes in the sample when read as xywh


def test_wrong_box_format_is_reported_not_silent(sample, tmp_path, capsys):
    # read as xyxy, the sample's width/height numbers give inverted detections: scored (they match
    # nothing), with one warning naming the box format; --strict: the error
    rc, out, err = run_eval_map(capsys, "--ground-truth", sample / "groundtruths", "--detections", sample / "detections")
    line = next(ln for ln in err.splitlines() if "inverted" in ln)
    assert rc == 0 and err.count("inverted") == 1 and "00001.txt line 1: [5.0, 67.0, 31.0, 48.0]" in line, err
    assert line.endswith("or is the box format xywh? --box-format xywh)"), line
    # --strict: the first input warning is the error (here the ground truth's, read first)
    line = eval_map_error(capsys, "--ground-truth", sample / "groundtruths", "--detections", sample / "detections", "--strict")
    assert "box(es) dropped" in line, line
    # and degenerate ground-truth boxes: dropped, counted in one warning
    (tmp_path / "d.json").write_text("[]")
    rc, out, err = run_eval_map(capsys, "--ground-truth", sample / "groundtruths", "--detections", tmp_path / "d.json")
    assert rc == 0 and err.count("box(es) dropped") == 1 and "12 box(es) dropped" in err


def test_coco_protocol_and_all_protocols_run(sample, tmp_path, capsys):
    for protocol in ("ilsvrc", "coco"):
        rc, out, err = run_eval_map(capsys, "--protocol", protocol, "--ground-truth", sample / "groundtruths",
                            "--box-format", "xywh", "--detections", sample / "detections", "--json", tmp_path / "c.json")
        assert rc == 0, err
        r = json.loads((tmp_path / "c.json").read_text())
        assert 0 <= r["mAP"] <= 1
    assert len(r["stats"]) == 12 and "Average Precision" in out


def test_bad_iou_and_missing_ground_truth(tmp_path, capsys):
    (tmp_path / "d.json").write_text("[]")
    g = tmp_path / "gt"
    g.mkdir()
    (g / "a.txt").write_text("person 1 1 nan 5\n")
    assert "--iou 1.5" in eval_map_error(capsys, "--ground-truth", g, "--detections", tmp_path / "d.json", "--iou", "1.5")
    assert "give --ground-truth and --detections" in eval_map_error(capsys, "--detections", tmp_path / "d.json")


def test_split_mode_scores_and_saves_detections(test_data, tmp_path, capsys, monkeypatch):
    import detector.cli.eval_map as inference
    from detector.io.datasets import load_dataset

    calls = {}

    def fake_detect_split(cfg, split, model_path=None, cache_dir=None, device="auto", **kw):
        calls.update(split=split, model=model_path, cache=cache_dir, device=device, root=cfg.data.root, proto=cfg.test.protocol)
        ds = load_dataset(cfg.data, split)
        items = []
        for r in ds.records:  # the ground truth itself minus the last box of each image
            items.append({"image": r.path, "detections": [
                {"box": b.tolist(), "score": 0.9 - 0.001 * k, "label": ds.classes[l - 1]}
                for k, (b, l) in enumerate(zip(r.boxes[:-1], r.labels[:-1]))]})
        return ds, items

    monkeypatch.setattr(inference, "detect_split", fake_detect_split)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  format: voc\n  root: /nonexistent\n")
    rc, out, err = run_eval_map(capsys, "--split", "test", "--config", cfg, "--data-root", test_data / "voc-mini",
                        "--set", "test.protocol=voc07", "--model", "m.pt", "--device", "cpu",
                        "--json", tmp_path / "out" / "r.json", "--plots", tmp_path / "out")
    assert rc == 0, err
    assert calls == {"split": "test", "model": "m.pt", "cache": None, "device": "cpu",
                     "root": str(test_data / "voc-mini"), "proto": "voc07"}
    r = json.loads((tmp_path / "out" / "r.json").read_text())
    assert r["protocol"] == "voc07" and 0.8 < r["mAP"] < 1.0
    saved = tmp_path / "out" / "detections_test.json"
    assert saved.is_file() and (tmp_path / "out" / "r.config.yaml").is_file()
    assert (tmp_path / "out" / "pr_voc07.png").is_file()
    # re-scoring the saved detections from files gives the same numbers
    rc, out2, err = run_eval_map(capsys, "--protocol", "voc07", "--ground-truth", test_data / "voc-mini" / "ImageSets" / "Main" / "test.txt",
                         "--detections", saved, "--json", tmp_path / "r2.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r2.json").read_text())["mAP"] == r["mAP"]
    # --save-detections and --protocol override
    rc, out, err = run_eval_map(capsys, "--split", "test", "--config", cfg, "--data-root", test_data / "voc-mini",
                        "--protocol", "coco", "--save-detections", tmp_path / "mine.json")
    assert rc == 0 and (tmp_path / "mine.json").is_file() and "Average Precision" in out


def test_split_mode_bad_usage(tmp_path, capsys, sample):
    assert "--split needs --config" in eval_map_error(capsys, "--split", "test")
    assert "do not combine" in eval_map_error(capsys, "--split", "test", "--config", "x.yaml", "--detections", sample / "detections")
    assert "config" in eval_map_error(capsys, "--split", "test", "--config", tmp_path / "none.yaml")


def test_eval_split_config_classes_differ_from_model(mini, tmp_path, capsys, monkeypatch):
    from detector.cli.eval_map import main as eval_main

    monkeypatch.chdir(tmp_path)
    model = untrained_detector(tmp_path / "m.pt", tiny_config(mini))
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {mini}\n  classes: [Platelets, RBC, WBC, Neutrophil]\n")
    rc = eval_main(["--split", "test", "--config", str(cfg_path), "--model", model, "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert err[0].startswith("eval-map: data: voc layout at ")  # data.format auto names what it found
    assert len(err) == 2 and err[1].startswith("eval-map: error:") and "Neutrophil" in err[1]
    assert not (tmp_path / "detections_test.json").exists()


def test_class_absent_from_the_data_trains_and_has_no_ap(mini, tmp_path, capsys, monkeypatch):
    from detector.cli.eval_map import main as eval_main

    four = "[Platelets,RBC,WBC,Neutrophil]"
    cfg = tiny_config(mini, **{"data.classes": four, "train.val_every": 1, "proposals.working_width": 200,
                               "proposals.max_boxes": 60})
    val = jittered_proposals(load_dataset(cfg.data, "test"))
    path = train_given(cfg, str(tmp_path / "run"), torch.device("cpu"), progress=False,
                          train_proposals=jittered_proposals(load_dataset(cfg.data, "train")), val_proposals=val)
    # voc-mini holds RBC and WBC only: Platelets and the extra Neutrophil are never seen
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert [a is None for a in row["val_AP"]] == [True, False, False, True]
    assert row["val_mAP"] == pytest.approx(np.mean(row["val_AP"][1:3]))
    # eval-map --split with the same four classes: the absent class is n/a, outside the mean
    monkeypatch.chdir(tmp_path)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {mini}\n  classes: {four}\ntest:\n  score_thr: 0.0\n")
    rc = eval_main(["--split", "test", "--config", str(cfg_path), "--model", path, "--cache-dir", str(tmp_path / "cache"),
                    "--json", "m.json"])
    assert rc == 0
    res = json.loads((tmp_path / "m.json").read_text())
    ap = res["per_class_AP"]
    assert ap["Neutrophil"] is None and ap["Platelets"] is None and ap["RBC"] is not None and ap["WBC"] is not None
    assert res["mAP"] == pytest.approx(np.mean([ap["RBC"], ap["WBC"]]))
    assert "Neutrophil" in capsys.readouterr().out


def test_eval_split_with_model(model, test_data, tmp_path, capsys, monkeypatch):
    from detector.cli.eval_map import main as eval_main

    monkeypatch.chdir(tmp_path)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n"
                        "proposals:\n  method: ss\n  working_width: 200\n  max_boxes: 60\n"
                        "test:\n  protocol: voc\n  score_thr: 0.0\n")
    rc = eval_main(["--split", "test", "--config", str(cfg_path), "--model", model, "--cache-dir", str(tmp_path / "cache"),
                    "--json", str(tmp_path / "m.json")])
    assert rc == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= res["mAP"] <= 1.0
    # pipeline order, warping timed apart from the network
    assert list(res["seconds_per_image"]) == ["load", "proposals", "warp", "network", "postprocess"]
    assert res["seconds_per_image"]["proposals"] > 0  # the time the cached boxes took
    assert res["seconds_per_image"]["warp"] > 0 and res["seconds_per_image"]["network"] > 0
    line = [l for l in capsys.readouterr().err.splitlines() if l.startswith("seconds per image:")]
    assert len(line) == 1 and "warp" in line[0] and "network" in line[0]
    dets = json.loads((tmp_path / "detections_test.json").read_text())
    assert len(dets) == 1 and dets[0]["image"].endswith("BloodImage_00001.jpg")


def test_eval_split_proposals_from_config(model, test_data, tmp_path, capsys, monkeypatch):
    """--proposals config scores the same region classifier on the config's proposals."""
    from detector.cli.eval_map import main as eval_main

    monkeypatch.chdir(tmp_path)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n"
                        "test:\n  protocol: voc\n  score_thr: 0.0\n")
    common = ["--split", "test", "--config", str(cfg_path), "--model", model, "--cache-dir", str(tmp_path / "cache")]
    assert eval_main(common + ["--proposals", "config", "--set", "proposals.method=ss", "--set", "proposals.working_width=160",
                               "--set", "proposals.max_boxes=7", "--json", "a.json"]) == 0
    # the cache now holds the config's setting (7 boxes), not the model's (60)
    cached = [np.load(f) for f in (tmp_path / "cache" / "proposals").glob("*/*.npz")]
    assert cached and all(len(c["boxes"]) <= 7 for c in cached)
    assert eval_main(common + ["--json", "b.json"]) == 0
    assert len(list((tmp_path / "cache" / "proposals").glob("*/*.npz"))) == 2  # the model's setting, computed anew


def test_analyze_writes_the_analysis_and_its_summary(test_data, tmp_path, capsys):
    fix = test_data / "analysis"
    out = tmp_path / "an"
    rc, stdout, err = run_eval_map(capsys, "--protocol", "voc", "--ground-truth", fix / "bccd_test_gt.json",
                                   "--detections", fix / "bccd_test_results.json", "--analyze", out)
    assert rc == 0, err
    doc = json.loads((out / "analysis.json").read_text())
    assert set(doc["tide"]["dAP"]) >= {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
    assert doc["mAP"] == pytest.approx(0.8158, abs=5e-5)  # the bundled R-CNN model's test mAP
    assert "TIDE dAP" in stdout and "all classes" in stdout
    assert (out / "summary.txt").is_file() and (out / "hoiem_all.png").is_file() and (out / "tide_all.png").is_file()
    groups = tmp_path / "groups.yaml"
    groups.write_text("RBC: cell\nWBC: cell\nPlatelets: fragment\n")
    rc, _, err = run_eval_map(capsys, "--protocol", "voc", "--ground-truth", fix / "bccd_test_gt.json",
                              "--detections", fix / "bccd_test_results.json", "--analyze", tmp_path / "an2",
                              "--class-groups", groups)
    assert rc == 0, err
    assert json.loads((tmp_path / "an2" / "analysis.json").read_text())["groups"]


def test_analyze_bad_usage(test_data, tmp_path, capsys):
    fix = test_data / "analysis"
    base = ["--protocol", "voc", "--ground-truth", fix / "bccd_test_gt.json", "--detections", fix / "bccd_test_results.json"]
    assert "go with --analyze" in eval_map_error(capsys, *base, "--analyze-all")
    (tmp_path / "file").write_text("x")
    assert "is a file, expected a folder" in eval_map_error(capsys, *base, "--analyze", tmp_path / "file")
    bad = tmp_path / "g.yaml"
    bad.write_text("[1, 2]\n")
    assert "expected a mapping" in eval_map_error(capsys, *base, "--analyze", tmp_path / "x", "--class-groups", bad)


# ---------------------------------------------------------------------------------------------
# inverted detection boxes, scored as each protocol's reference tool scores them

# one class; ground truth A (image a), B (image b), D (image c, difficult), 1-based inclusive
INVERTED_GT = {"a.txt": "cat 1 1 100 100\n", "b.txt": "cat 1 1 50 50\n", "c.txt": "cat 1 1 30 30 difficult\n"}
# ranked: A exactly (TP); B with both corners swapped (devkit width 1 - 50 + 1 <= 0: eval_detection.m /
# VOCevaldet.m compute no overlap, `if iw>0 & ih>0`; a false positive, though swapped back it would
# take B); D swapped (FP; voc does not ignore it as it ignores detections on difficult boxes); B
# exactly (TP: B is still free); on A with x swapped (FP)
INVERTED_DEVKIT = "1 1 0.9 1 1 100 100\n2 1 0.8 50 50 1 1\n3 1 0.75 30 30 1 1\n2 1 0.7 1 1 50 50\n1 1 0.6 60 1 10 100\n"
# voc (npos 2, D is difficult): TP FP FP TP FP, recall .5 .5 .5 1 1, precision 1 .5 1/3 .5 .4:
#   all-point .5 * 1 + .5 * .5 = .75; 11-point (6 * 1 + 5 * .5) / 11
# ilsvrc (no difficult flag, npos 3): recall 1/3 1/3 1/3 2/3 2/3, same precision: 1/3 + 1/3 * .5 = .5
INVERTED_AP = {"voc": 0.75, "voc07": 8.5 / 11, "ilsvrc": 0.5}


def _inverted_case(tmp_path, bom=False):
    g = tmp_path / "gt"
    g.mkdir()
    for name, text in INVERTED_GT.items():
        (g / name).write_text(text)
    sub = tmp_path / "sub.txt"
    sub.write_text(INVERTED_DEVKIT, encoding="utf-8-sig" if bom else "utf-8")
    folder = tmp_path / "dets"     # the same detections as a folder of text files (Cartucho/mAP)
    folder.mkdir()
    for line in INVERTED_DEVKIT.splitlines():
        idx, _, score, *box = line.split()
        with open(folder / f"{'abc'[int(idx) - 1]}.txt", "a", encoding="utf-8-sig" if bom else "utf-8") as f:
            f.write(f"cat {score} {' '.join(box)}\n")
    return g, sub, folder


@pytest.mark.parametrize("protocol", ["ilsvrc", "voc", "voc07"])
def test_inverted_boxes_score_as_the_devkits(tmp_path, capsys, protocol):
    g, sub, folder = _inverted_case(tmp_path)
    for dets in (sub, folder):
        rc, out, err = run_eval_map(capsys, "--protocol", protocol, "--ground-truth", g, "--detections", dets,
                                    "--json", tmp_path / "r.json")
        assert rc == 0, err
        r = json.loads((tmp_path / "r.json").read_text())
        assert r["mAP"] == pytest.approx(INVERTED_AP[protocol], abs=1e-12), (protocol, dets)
        assert r["num_detections"] == [5] and r["num_tp"] == [2]
    assert err.strip() == (f"eval-map: warning: {folder}: 3 box(es) inverted (xmax < xmin or ymax < ymin); e.g. "
                           "a.txt line 2: [60.0, 1.0, 10.0, 100.0]; b.txt line 1: [50.0, 50.0, 1.0, 1.0]; "
                           "c.txt line 1: [30.0, 30.0, 1.0, 1.0] (kept and scored as the ILSVRC/VOC devkits and "
                           "pycocotools score them: they overlap nothing; or is the box format xywh? --box-format xywh)")


def test_inverted_boxes_one_warning_and_strict(tmp_path, capsys):
    g, sub, _ = _inverted_case(tmp_path)
    rc, out, err = run_eval_map(capsys, "--protocol", "ilsvrc", "--ground-truth", g, "--detections", sub)
    assert rc == 0 and err.strip() == (
        f"eval-map: warning: {sub}: 3 box(es) inverted (xmax < xmin or ymax < ymin); e.g. line 2: [50.0, 50.0, 1.0, 1.0]; "
        "line 3: [30.0, 30.0, 1.0, 1.0]; line 5: [60.0, 1.0, 10.0, 100.0] (kept and scored as the ILSVRC/VOC devkits and "
        "pycocotools score them: they overlap nothing)"), err
    line = eval_map_error(capsys, "--protocol", "ilsvrc", "--ground-truth", g, "--detections", sub, "--strict")
    assert line == (f"eval-map: error: {sub}: line 2: [50.0, 50.0, 1.0, 1.0] (box(es) inverted (xmax < xmin or "
                    "ymax < ymin); --strict makes this an error)")
    # one --strict for every input warning: a class the ground truth lacks is the error too
    sub.write_text("1 1 0.9 1 1 100 100\n1 2 0.8 1 1 100 100\n")
    rc, out, err = run_eval_map(capsys, "--ground-truth", g, "--detections", sub)
    assert rc == 0 and "1 detection(s) of classes the ground truth does not have left out: class id 2 (1)" in err
    line = eval_map_error(capsys, "--ground-truth", g, "--detections", sub, "--strict")
    assert line == f"eval-map: error: {sub} line 2: unknown class id 2 (--strict makes this an error)"


def test_a_bom_first_in_a_submission_or_text_file_is_skipped(tmp_path, capsys):
    g, sub, folder = _inverted_case(tmp_path, bom=True)
    assert sub.read_bytes().startswith(b"\xef\xbb\xbf")
    for dets in (sub, folder):
        rc, out, err = run_eval_map(capsys, "--protocol", "voc", "--ground-truth", g, "--detections", dets,
                                    "--json", tmp_path / "r.json")
        assert rc == 0 and "left out" not in err, err
        assert json.loads((tmp_path / "r.json").read_text())["mAP"] == pytest.approx(0.75, abs=1e-12)


def test_coco_with_inverted_boxes_is_pycocotools(tmp_path, capsys):
    # loadRes: area = w * h; one negative side: a negative area, outside every area range (an
    # unmatched detection there is ignored); two: a false positive; each takes a maxDets slot
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_file, res_file = coco_eval_files(tmp_path)
    res = json.loads(res_file.read_text())
    for k, r in enumerate(res):
        x, y, w, h = r["bbox"]
        if k % 3 == 0:
            r["bbox"] = [x + w, y, -w, h] if k % 2 else [x, y + h, w, -h]
        elif k % 5 == 0:
            r["bbox"] = [x + w, y + h, -w, -h]
    res_file.write_text(json.dumps(res))
    rc, out, err = run_eval_map(capsys, "--protocol", "coco", "--ground-truth", gt_file, "--detections", res_file,
                                "--json", tmp_path / "r.json", "--analyze", tmp_path / "an")
    assert rc == 0 and err.count("box(es) inverted (a negative width or height)") == 1, err
    ours = json.loads((tmp_path / "r.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        E = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
        E.evaluate(); E.accumulate(); E.summarize()
    names = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
             "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]
    np.testing.assert_allclose([ours["stats"][n] for n in names], E.stats, atol=1e-12)
    # the error analysis scores them the same way: its AP is the protocol's
    an = json.loads((tmp_path / "an" / "analysis.json").read_text())
    np.testing.assert_allclose(an["mAP"], ours["mAP"], atol=1e-12)


def test_class_groups_checked_before_the_work(test_data, tmp_path, capsys, monkeypatch):
    """--class-groups: a bad file was found only after the whole evaluation; a class name that
    is not the data's was ignored without a word."""
    import detector.cli.eval_map as em

    def no_work(*a, **k):
        raise AssertionError("evaluated before the --class-groups file was checked")

    monkeypatch.setattr(em, "evaluate", no_work)
    fix = test_data / "analysis"
    base = ["--protocol", "voc", "--ground-truth", fix / "bccd_test_gt.json", "--detections", fix / "bccd_test_results.json",
            "--analyze", tmp_path / "an"]
    bad = tmp_path / "g.yaml"
    bad.write_text("[1, 2]\n")
    assert "expected a mapping" in eval_map_error(capsys, *base, "--class-groups", bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("RBC: cell\nRBCs: cell\n")
    line = eval_map_error(capsys, *base, "--class-groups", typo)
    assert line.endswith(f"--class-groups {typo}: class 'RBCs' is not a class of the data (Platelets, RBC, WBC)"), line
