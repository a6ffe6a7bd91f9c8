"""``--init imagenet`` (train-detector, train-classifier, ``model.init: imagenet``): torchvision's
published weights, found in a temporary torch hub cache holding a fabricated state dict of the
right keys and shapes, loaded, recorded (file name and SHA-256) in the run's config; the offline
machine without the file gets one line naming the file, the URL and the folder (the download is
mocked: no network is touched); the packaged config --data picks says which weights it starts from."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
import yaml

from backbone.errors import UserError
from backbone.weights import file_sha256, published_weights
from detector.classification.init import prepare_init
from detector.cli import train_classifier, train_detector as train_detector_cli
from detector.cli.common import DEFAULT_CONFIG, DEFAULT_IMAGENET_CONFIG, data_default_config
from detector.config import DetectorConfig
from detector.engine.train_detector import build_member
from tests.detector.conftest import TRAIN_SETS
from tests.detector.helpers import tiny_config


@pytest.fixture
def no_network(monkeypatch):
    """Every download fails as on an offline machine; the calls are counted."""
    calls = []

    def offline(url, dst, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return calls


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    """A state dict with the keys and shapes of torchvision's googlenet-1378be20.pth (aux heads
    included, as the published file has them), random values."""
    torch.manual_seed(0)
    net = torchvision.models.GoogLeNet(num_classes=1000, aux_logits=True, init_weights=False)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics unlike a fresh BN's, so folding shows
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("weights") / "googlenet-1378be20.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def cached(hub, fabricated):
    hub.mkdir(parents=True)
    (hub / fabricated.name).symlink_to(fabricated)
    return hub / fabricated.name


def test_the_published_files_come_from_torchvision_s_weights_api(hub):
    pw = published_weights("googlenet_bn")
    assert pw.url == torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.url
    assert (pw.file_name, pw.folder) == ("googlenet-1378be20.pth", str(hub))
    assert published_weights("inception_v3").file_name == "inception_v3_google-0cc3c7bd.pth"
    with pytest.raises(UserError, match=r"'googlenet' has no published ImageNet weights .*googlenet_bn "
                                         r"\(GoogLeNet_Weights.IMAGENET1K_V1\), inception_v3"):
        published_weights("googlenet")


def test_a_cached_file_is_found_loaded_folded_and_recorded(cached, fabricated, no_network):
    cfg = tiny_config("unused", **{"model.kind": "fast", "model.rcnn": "null", "model.arch": "googlenet_bn",
                                  "model.fast.tap": "[inception3b]", "model.fast.norm": "none", "model.init": "imagenet"})
    assert prepare_init(cfg.model).startswith("starting from ImageNet weights: GoogLeNet_Weights.IMAGENET1K_V1")
    assert cfg.model.init_weights == f"googlenet-1378be20.pth sha256:{file_sha256(str(fabricated))}"
    member = build_member(cfg, 3, 0)
    state = torch.load(fabricated)
    assert torch.equal(member.trunk.state_dict()["conv1.conv.weight"], state["conv1.conv.weight"])
    std = (state["conv1.bn.running_var"] + 0.001).sqrt()   # BN statistics folded into the affine
    assert torch.allclose(member.trunk.state_dict()["conv1.bn.weight"], state["conv1.bn.weight"] / std)
    assert no_network == []  # a cached file is used as it is, never downloaded again


def test_bn_re_estimation_is_named_when_fine_tuning(cached, no_network):
    cfg = tiny_config("unused", **{"model.kind": "fast", "model.rcnn": "null", "model.arch": "googlenet_bn",
                                  "model.init": "imagenet"})
    with pytest.warns(UserWarning, match="model.fast.norm=none"):
        prepare_init(cfg.model)


def test_offline_without_the_file_is_one_line_naming_file_url_and_folder(hub, no_network):
    cfg = DetectorConfig()
    cfg.model.arch, cfg.model.init = "googlenet_bn", "imagenet"
    with pytest.raises(UserError) as e:
        prepare_init(cfg.model)
    assert str(e.value) == (
        "--init imagenet: GoogLeNet_Weights.IMAGENET1K_V1 (googlenet-1378be20.pth) is not in the torch hub cache and "
        "could not be downloaded ([Errno -2] Name or service not known): download "
        f"https://download.pytorch.org/models/googlenet-1378be20.pth into {hub}/ (as googlenet-1378be20.pth), or "
        "train from scratch with --init none")
    assert no_network == ["https://download.pytorch.org/models/googlenet-1378be20.pth"]


def test_init_none_is_from_scratch():
    cfg = DetectorConfig()
    cfg.model.init = "none"
    assert prepare_init(cfg.model) is None and cfg.model.init is None and cfg.model.init_weights is None


def test_the_data_default_config_says_which_weights_it_starts_from(hub, cached):
    assert data_default_config(None)[0] == DEFAULT_IMAGENET_CONFIG
    assert "googlenet-1378be20.pth found in the torch hub cache" in data_default_config(None)[1]
    assert data_default_config("none")[0] == DEFAULT_CONFIG


def test_without_the_weights_the_data_default_trains_from_scratch_and_says_how(hub):
    path, line = data_default_config(None)
    assert path == DEFAULT_CONFIG
    assert line == (f"training from scratch: no ImageNet weights in the torch hub cache ({hub}/googlenet-1378be20.pth); "
                    f"to start from them, download https://download.pytorch.org/models/googlenet-1378be20.pth into "
                    f"{hub}/ (as googlenet-1378be20.pth) or run with --init imagenet on a machine online")
    assert data_default_config("imagenet")[0] == DEFAULT_IMAGENET_CONFIG  # downloaded by the run


def test_train_detector_offline_is_one_error_line_before_any_work(hub, no_network, test_data, tmp_path, capsys):
    rc = train_detector_cli.main(["--data", str(test_data / "layouts" / "voc_xml"), "--init", "imagenet",
                                  "--out", str(tmp_path / "run"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "train-detector: error: --init imagenet: GoogLeNet_Weights.IMAGENET1K_V1" in err
    assert "config " + DEFAULT_IMAGENET_CONFIG in err  # the line saying which config --data took
    assert not (tmp_path / "run" / "model.pt").exists()


def test_train_classifier_init_imagenet_records_the_weights(cached, fabricated, folder, tmp_path, no_network):
    sets = []
    for s in TRAIN_SETS + ["data.train_split=train", "data.val_split=test", "model.aux_logits=false",
                           "model.arch=googlenet_bn"]:
        sets += ["--set", s]
    out = tmp_path / "cls"
    assert train_classifier.main(["--data-root", str(folder), "--out", str(out), "--device", "cpu",
                                  "--init", "imagenet", *sets]) == 0
    model = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert model["init"] == "imagenet"
    assert model["init_weights"] == f"googlenet-1378be20.pth sha256:{file_sha256(str(fabricated))}"
