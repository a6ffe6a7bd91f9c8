import pytest
import torch
import torchvision

from backbone import UserError, build_backbone, extract_features, read_state_dict


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


def _small_state_dict_file(path):
    torch.manual_seed(0)
    torch.save({"w": torch.randn(64, 64), "b": torch.randn(64)}, path)
    return path


def test_damaged_tensor_bytes_fail_crc(tmp_path):
    import zipfile

    path = _small_state_dict_file(tmp_path / "damaged.pth")
    with zipfile.ZipFile(path) as zf:  # torch.save stores members uncompressed: find w's bytes
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    raw = bytearray(path.read_bytes())
    # the member's data follow its 30-byte local header, file name and extra field
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    mid = start + info.file_size // 2
    raw[mid:mid + 8] = bytes(b ^ 0xFF for b in raw[mid:mid + 8])
    path.write_bytes(bytes(raw))
    assert torch.load(path, weights_only=True)["w"].shape == (64, 64)  # torch itself does not notice
    with pytest.raises(UserError, match=r"damaged\.pth: corrupt \(bad CRC in .*data/0\)$"):
        read_state_dict(path)


def test_truncated_empty_and_directory(tmp_path):
    real = _save(build_backbone("googlenet", num_classes=3), tmp_path / "real.pth")
    data = real.read_bytes()
    for name, cut in [("half.pth", len(data) // 2), ("tail.pth", len(data) - 100)]:
        (tmp_path / name).write_bytes(data[:cut])
        with pytest.raises(UserError, match=rf"{name}: (not a readable PyTorch file|corrupt) \(") as e:
            read_state_dict(tmp_path / name)
        assert "\n" not in str(e.value)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(UserError, match=r"empty\.pth: empty file"):
        read_state_dict(tmp_path / "empty.pth")
    with pytest.raises(UserError, match="is a folder"):
        read_state_dict(tmp_path)


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    ckpt = tmp_path / ".cache" / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    src = build_backbone("googlenet", num_classes=3).eval()
    _save(src, ckpt / "googlenet-1378be20.pth")
    m = build_backbone("googlenet", num_classes=3, weights="~/.cache/torch/hub/checkpoints/googlenet-1378be20.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x), src(x))


class _NotATensor:
    pass


def test_pickled_objects_one_line_error(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"w": torch.zeros(2), "thing": _NotATensor()}, path)
    with pytest.raises(UserError) as e:
        read_state_dict(path)
    msg = str(e.value)
    assert msg == f"weights file {path}: holds Python objects other than tensors (refused by weights_only loading)"
    assert "\n" not in msg and "\x1b" not in msg


def test_own_export_reloads_to_identical_outputs(tmp_path):
    # an export of another class count is not torchvision's ImageNet file: no input transform
    torch.manual_seed(0)
    src = build_backbone("googlenet_bn", 5).eval()
    path = _save(src, tmp_path / "export.pth")
    again = build_backbone("googlenet_bn", 5, weights=path).eval()
    assert again.transform_input is False
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), src(x))


def test_transform_input_default_and_explicit_choice(tmp_path):
    imagenet = _save(torchvision.models.GoogLeNet(aux_logits=False, transform_input=True, init_weights=False),
                     tmp_path / "imagenet.pth")
    assert build_backbone("googlenet_bn").transform_input is False
    assert build_backbone("googlenet_bn", weights=imagenet).transform_input is True
    assert build_backbone("googlenet_bn", 7, weights=imagenet, ignore_head=True).transform_input is True
    assert build_backbone("googlenet_bn", weights=imagenet, transform_input=False).transform_input is False
    own = _save(build_backbone("googlenet_bn", 5), tmp_path / "own.pth")
    assert build_backbone("googlenet_bn", 5, weights=own, transform_input=True).transform_input is True
