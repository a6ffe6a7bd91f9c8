import pytest
import torch
import torchvision

from backbone import UserError, build_backbone, extract_features


def _save(model, path):
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("aux", [True, False])
def test_googlenet_bn_loads_torchvision_state_dict(tmp_path, aux):
    torch.manual_seed(0)
    # the layout of torchvision's ImageNet file googlenet-1378be20.pth: aux heads included
    src = torchvision.models.GoogLeNet(num_classes=1000, aux_logits=True, transform_input=True, init_weights=True).eval()
    path = _save(src, tmp_path / "googlenet-test.pth")
    ours = build_backbone("googlenet_bn", aux_logits=aux, weights=path).eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(ours(x), src(x))


def test_googlenet_bn_state_dict_without_aux(tmp_path):
    src = torchvision.models.GoogLeNet(aux_logits=False, transform_input=True, init_weights=True).eval()
    path = _save(src, tmp_path / "noaux.pth")
    ours = build_backbone("googlenet_bn", weights=path).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(ours(x), src(x))
    with pytest.raises(UserError, match="missing keys"):
        build_backbone("googlenet_bn", aux_logits=True, weights=path)


@pytest.mark.parametrize("aux", [True, False])
def test_inception_v3_loads_torchvision_state_dict(tmp_path, aux):
    torch.manual_seed(0)
    src = torchvision.models.Inception3(aux_logits=True, transform_input=True, init_weights=False).eval()
    path = _save(src, tmp_path / "inception.pth")
    ours = build_backbone("inception_v3", aux_logits=aux, weights=path).eval()
    x = torch.randn(1, 3, 107, 107)
    with torch.no_grad():
        assert torch.equal(ours(x), src(x))


def test_paper_googlenet_roundtrip_and_ignore_head(tmp_path):
    torch.manual_seed(0)
    src = build_backbone("googlenet", aux_logits=True).eval()
    path = _save(src, tmp_path / "g.pth")
    ours = build_backbone("googlenet", weights=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), src(x))
    # another class count: everything but the class layers comes from the file
    m = build_backbone("googlenet", num_classes=4, weights=path, ignore_head=True)
    assert torch.equal(m.conv1[0].weight, src.conv1[0].weight)
    assert m.fc.weight.shape == (4, 1024)
    with pytest.raises(UserError, match="shape mismatch"):
        build_backbone("googlenet", num_classes=4, weights=path)


def test_wrong_network_file(tmp_path):
    path = _save(torchvision.models.GoogLeNet(init_weights=True), tmp_path / "bn.pth")
    with pytest.raises(UserError, match=r"bn\.pth: does not match for network 'googlenet'"):
        build_backbone("googlenet", weights=path)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="corrupt.pth: not a readable PyTorch file"):
        build_backbone("googlenet", weights=bad)
    with pytest.raises(UserError, match="no such file"):
        build_backbone("googlenet", weights=tmp_path / "nope.pth")
    notdict = tmp_path / "list.pth"
    torch.save([1, 2, 3], notdict)
    with pytest.raises(UserError, match="not a state dict"):
        build_backbone("googlenet", weights=notdict)


def test_unknown_network():
    with pytest.raises(UserError, match="unknown network 'alexnet'"):
        build_backbone("alexnet")


@pytest.mark.parametrize("name,layer", [("googlenet", "inception4e"), ("googlenet_bn", "inception4e"), ("inception_v3", "Mixed_6e")])
def test_features_share_weights(name, layer):
    m = build_backbone(name).eval()
    x = torch.randn(1, 3, 160, 160)
    f = extract_features(m, x, [layer])[layer]
    assert f.shape[1] == (832 if "googlenet" in name else 768)
