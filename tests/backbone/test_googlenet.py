import pytest
import torch

from backbone import GoogLeNet, GoogLeNetOutputs, UserError, build_backbone, count_macs, count_parameters, extract_features
from backbone.googlenet import INCEPTION_CONFIG, MIN_INPUT_SIZE

# Table 1 of the paper, written out here rather than imported, so that a change to the model's
# configuration cannot silently change what the tests check against.
# name: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
TABLE1 = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
# Table 1's output depths of the inception rows
TABLE1_DEPTH = {
    "inception3a": 256, "inception3b": 480, "inception4a": 512, "inception4b": 512, "inception4c": 512,
    "inception4d": 528, "inception4e": 832, "inception5a": 832, "inception5b": 1024,
}


def conv(cin, cout, k):
    return cin * cout * k * k + cout


def fc(cin, cout):
    return cin * cout + cout


def paper_param_count(num_classes=1000):
    """Table 1, derived from its filter columns: every conv and FC layer's weights + biases."""
    n = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    cin = 192
    for c1, r3, c3, r5, c5, pp in TABLE1.values():
        n += conv(cin, c1, 1) + conv(cin, r3, 1) + conv(r3, c3, 3) + conv(cin, r5, 1) + conv(r5, c5, 5) + conv(cin, pp, 1)
        cin = c1 + c3 + c5 + pp
    n += fc(cin, num_classes)
    return n


def paper_aux_param_count(num_classes=1000):
    def head(cin):
        return conv(cin, 128, 1) + fc(128 * 4 * 4, 1024) + fc(1024, num_classes)
    ch = {name: c[0] + c[2] + c[4] + c[5] for name, c in TABLE1.items()}
    return head(ch["inception4a"]) + head(ch["inception4d"])


def test_config_is_table1():
    assert dict(INCEPTION_CONFIG) == TABLE1
    assert list(INCEPTION_CONFIG) == list(TABLE1)
    m = GoogLeNet()
    for name, row in TABLE1.items():
        b = getattr(m, name)
        built = (b.branch1[0].out_channels, b.branch2[0][0].out_channels, b.branch2[1][0].out_channels,
                 b.branch3[0][0].out_channels, b.branch3[1][0].out_channels, b.branch4[1][0].out_channels)
        assert built == row, name


def test_inception_output_depths():
    assert [TABLE1_DEPTH[n] for n in TABLE1] == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    m = GoogLeNet().eval()
    with torch.no_grad():
        feats = extract_features(m, torch.zeros(1, 3, 64, 64), list(TABLE1))
    for name, depth in TABLE1_DEPTH.items():
        assert getattr(m, name).out_channels == depth, name
        assert feats[name].shape[1] == depth, name


def test_dropout_rates():
    m = GoogLeNet(aux_logits=True)
    assert m.dropout.p == 0.4
    assert m.aux1.dropout.p == 0.7 and m.aux2.dropout.p == 0.7
    assert build_backbone("googlenet", aux_logits=True).dropout.p == 0.4


def test_param_count_matches_table1():
    assert paper_param_count() == 6_998_552
    assert paper_param_count() + paper_aux_param_count() == 13_378_280
    assert count_parameters(build_backbone("googlenet")) == paper_param_count()
    m = build_backbone("googlenet", aux_logits=True)
    assert count_parameters(m) == 13_378_280
    assert count_parameters(m, exclude_prefixes=("aux1.", "aux2.")) == 6_998_552
    assert count_parameters(build_backbone("googlenet", num_classes=4)) == paper_param_count(4)


def test_feature_map_sizes_at_224():
    m = GoogLeNet().eval()
    feats = extract_features(m, torch.zeros(1, 3, 224, 224), ["conv1", "maxpool1", "maxpool2", "inception3b", "inception4e", "inception5b"])
    assert feats["conv1"].shape[-1] == 112
    assert feats["maxpool1"].shape[-1] == 56
    assert feats["maxpool2"].shape[-1] == 28
    assert feats["inception3b"].shape[1:] == (480, 28, 28)
    assert feats["inception4e"].shape[1:] == (832, 14, 14)
    assert feats["inception5b"].shape[1:] == (1024, 7, 7)


def test_has_lrn_and_real_5x5():
    m = GoogLeNet()
    assert isinstance(m.lrn1, torch.nn.LocalResponseNorm) and isinstance(m.lrn2, torch.nn.LocalResponseNorm)
    assert m.inception3a.branch3[1][0].kernel_size == (5, 5)
    assert m.dropout.p == 0.4


@pytest.mark.parametrize("size", [64, 96, 224])
def test_aux_heads_in_training_only(size):
    torch.manual_seed(0)
    m = build_backbone("googlenet", num_classes=5, aux_logits=True)
    x = torch.randn(2, 3, size, size)
    m.train()
    out = m(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (2, 5)
    m.eval()
    assert m(x).shape == (2, 5)
    assert build_backbone("googlenet", num_classes=5).train()(x).shape == (2, 5)


def test_aux_pool_is_paper_pool_at_224():
    # At 224 the 4a map is 14x14: the 5x5/3 average pool gives 4x4, which the adaptive pool keeps.
    head = GoogLeNet(aux_logits=True).aux1
    x = torch.randn(1, 512, 14, 14)
    pooled = torch.nn.functional.avg_pool2d(x, 5, 3)
    assert pooled.shape[-1] == 4
    assert torch.allclose(torch.nn.functional.adaptive_avg_pool2d(pooled, 4), pooled)


def test_macs_reasonable():
    # the paper: "about 1.5 billion multiply-adds" at inference
    macs = count_macs(build_backbone("googlenet"))
    assert 1.4e9 < macs < 1.65e9


def test_channels_last_same_output():
    torch.manual_seed(0)
    m = build_backbone("googlenet", num_classes=3).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        a = m(x)
        b = m.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(a, b, atol=1e-5)


def test_init_keeps_activations_bounded():
    # without batch norm the init must not blow activations up through 22 layers
    torch.manual_seed(0)
    m = build_backbone("googlenet", num_classes=4).eval()
    with torch.no_grad():
        f = extract_features(m, torch.randn(4, 3, 64, 64), ["inception3b", "inception5b"])
        logits = m(torch.randn(4, 3, 64, 64))
    assert 0.1 < f["inception5b"].std() < 10 and logits.abs().max() < 10


def test_final_feature_map_gives_the_logits():
    torch.manual_seed(0)
    m = build_backbone("googlenet", num_classes=6, aux_logits=True).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        f = extract_features(m, x, ["inception5b"])["inception5b"]
        logits = m.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(f, 1), 1))
        assert torch.allclose(logits, m(x), rtol=0, atol=1e-6)


def test_features_share_the_models_weights():
    torch.manual_seed(0)
    m = build_backbone("googlenet", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = extract_features(m, x, ["inception4a"])["inception4a"]
        m.inception3a.branch1[0].bias.add_(1.0)  # in place: a copy would not see it
        after = extract_features(m, x, ["inception4a"])["inception4a"]
    assert not torch.allclose(before, after)


def test_too_small_input_names_the_minimum():
    m = build_backbone("googlenet", num_classes=3).eval()
    with torch.no_grad():
        assert m(torch.zeros(1, 3, MIN_INPUT_SIZE, MIN_INPUT_SIZE)).shape == (1, 3)
        assert m(torch.zeros(1, 3, MIN_INPUT_SIZE, 80)).shape == (1, 3)
        for h, w in [(16, 16), (MIN_INPUT_SIZE - 1, MIN_INPUT_SIZE - 1), (80, 30)]:
            with pytest.raises(UserError, match=rf"input {h}x{w} px is too small: .* at least 31 px"):
                m(torch.zeros(1, 3, h, w))
