import pytest
import torch

from backbone import GoogLeNet, GoogLeNetOutputs, build_backbone, count_macs, count_parameters, extract_features
from backbone.googlenet import INCEPTION_CONFIG


def conv(cin, cout, k):
    return cin * cout * k * k + cout


def fc(cin, cout):
    return cin * cout + cout


def paper_param_count(num_classes=1000):
    """Table 1, derived from its filter columns: every conv and FC layer's weights + biases."""
    n = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    cin = 192
    for c1, r3, c3, r5, c5, pp in INCEPTION_CONFIG.values():
        n += conv(cin, c1, 1) + conv(cin, r3, 1) + conv(r3, c3, 3) + conv(cin, r5, 1) + conv(r5, c5, 5) + conv(cin, pp, 1)
        cin = c1 + c3 + c5 + pp
    n += fc(cin, num_classes)
    return n


def paper_aux_param_count(num_classes=1000):
    def head(cin):
        return conv(cin, 128, 1) + fc(128 * 4 * 4, 1024) + fc(1024, num_classes)
    ch = {name: c[0] + c[2] + c[4] + c[5] for name, c in INCEPTION_CONFIG.items()}
    return head(ch["inception4a"]) + head(ch["inception4d"])


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
