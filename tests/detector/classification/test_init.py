"""detector.classification.init: a detector member initialised from weights (model.init): a
train-classifier checkpoint, a torchvision state dict (with or without aux heads, and its input
re-normalisation), and one clear error for weights of another network."""

import pytest
import torch

from backbone.config import to_dict
from backbone.errors import UserError
from detector.engine.train_detector import build_member
from detector.io.checkpoints import save_detector
from detector.model import Detector
from tests.detector.helpers import CLASSES, tiny_config


def test_init_from_a_train_classifier_checkpoint(mini, tmp_path):
    from backbone import build_backbone
    from detector.io.checkpoints import save_classifier

    torch.manual_seed(5)
    clf = build_backbone("googlenet", 5, aux_logits=True)
    save_classifier(tmp_path / "clf.pt", clf, arch="googlenet", classes=list("abcde"), input_size=32)
    cfg = tiny_config(mini, **{"model.init": str(tmp_path / "clf.pt"), "model.bbox_reg": "true"})
    m = build_member(cfg, 3, seed=0)
    own, src = m.net.state_dict(), clf.state_dict()
    assert torch.equal(own["conv1.0.weight"], src["conv1.0.weight"])
    assert torch.equal(own["aux1.conv.0.weight"], src["aux1.conv.0.weight"])
    assert own["fc.weight"].shape == (4, src["fc.weight"].shape[1])  # C + 1 fresh outputs
    # the same seed without --init differs only in the loaded layers
    fresh = build_member(tiny_config(mini, **{"model.bbox_reg": "true"}), 3, seed=0)
    assert torch.equal(own["fc.weight"], fresh.net.state_dict()["fc.weight"])
    assert torch.equal(m.bbox_head.weight, fresh.bbox_head.weight)
    assert cfg.model.transform_input is False


@pytest.mark.parametrize("aux", [True, False])
def test_init_from_a_torchvision_state_dict(mini, tmp_path, aux):
    import torchvision

    torch.manual_seed(1)
    tv = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=False)
    assert tv.fc.out_features == 1000
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    cfg = tiny_config(mini, **{"model.arch": "googlenet_bn", "model.init": str(tmp_path / "tv.pth")})
    m = build_member(cfg, 3, seed=0)
    own = m.net.state_dict()
    for k in ("conv1.conv.weight", "inception5b.branch4.1.bn.running_var"):
        assert torch.equal(own[k], tv.state_dict()[k])
    assert own["fc.weight"].shape == (4, 1024)
    if aux:
        assert torch.equal(own["aux2.conv.conv.weight"], tv.state_dict()["aux2.conv.conv.weight"])
    else:  # no aux heads in the file: ours start fresh (they only serve training)
        assert "aux2.conv.conv.weight" in own
    m.train()
    out = m(torch.zeros(2, 3, 64, 64))
    assert out.logits.shape == (2, 4) and len(out.aux_logits) == 2
    # torchvision's ImageNet weights expect its input re-normalisation: turned on, and saved
    assert cfg.model.transform_input is True and m.net.transform_input is True
    save_detector(str(tmp_path / "det.pt"), to_dict(cfg), CLASSES, [m.state_dict()])
    det = Detector.from_checkpoint(str(tmp_path / "det.pt"))
    assert det.ensemble.members[0].net.transform_input is True
    # an explicit setting wins
    cfg2 = tiny_config(mini, **{"model.arch": "googlenet_bn", "model.init": str(tmp_path / "tv.pth"),
                               "model.transform_input": "false"})
    assert build_member(cfg2, 3, seed=0).net.transform_input is False


def test_init_of_another_network_is_a_clear_error(mini, tmp_path, capsys):
    import torchvision

    from backbone import build_backbone
    from detector.io.checkpoints import save_classifier
    from detector.cli.train_detector import main as train_main

    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    cfg = tiny_config(mini, **{"model.init": str(tmp_path / "tv.pth")})  # model.arch googlenet
    with pytest.raises(UserError, match=r"tv\.pth: it holds 'googlenet_bn' weights: set model.arch=googlenet_bn"):
        build_member(cfg, 3, seed=0)
    save_classifier(tmp_path / "clf.pt", build_backbone("googlenet_bn", 5), arch="googlenet_bn", classes=list("abcde"),
                    input_size=32)
    with pytest.raises(UserError, match="a 'googlenet_bn' classifier, but model.arch is 'googlenet'"):
        build_member(tiny_config(mini, **{"model.init": str(tmp_path / "clf.pt")}), 3, seed=0)
    torch.save({"x.weight": torch.zeros(2)}, tmp_path / "junk.pth")
    with pytest.raises(UserError, match="junk.pth: not weights of this network"):
        build_member(tiny_config(mini, **{"model.init": str(tmp_path / "junk.pth")}), 3, seed=0)
    # through the CLI: one error line, exit 2, before any proposal is computed
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {mini}\n  classes: [Platelets, RBC, WBC]\nproposals:\n  method: ss\n"
                        "model:\n  arch: googlenet\n")
    rc = train_main(["--config", str(cfg_path), "--out", str(tmp_path / "run"), "--init", str(tmp_path / "tv.pth"),
                     "--cache-dir", str(tmp_path / "cache"), "--stage", "classifier"])
    assert rc == 2
    err = [l for l in capsys.readouterr().err.splitlines() if "error" in l]
    assert len(err) == 1 and "set model.arch=googlenet_bn" in err[0]
    # the annotation index may be in the cache (--cache-dir moves it too); no proposal is computed
    assert not (tmp_path / "cache" / "proposals").exists() and not (tmp_path / "run" / "model.pt").exists()
