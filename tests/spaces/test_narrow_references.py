"""Each narrow space contains its reference model exactly: the reference configuration decodes to
a network whose cost equals the reference written out by hand here as ArchSpec JSON nodes."""

import pytest

from hostside.arch.examples import digits_small_cnn
from hostside.arch.spec import ArchSpec
from hostside.spaces.narrow import FAMILY_NAMES, make_narrow


class Hand:
    """Writes ArchSpec node dicts with explicit ids, independently of the spaces' graph builder."""

    def __init__(self):
        self.nodes = []

    def node(self, op, inputs, **attrs):
        nid = f"n{len(self.nodes)}"
        self.nodes.append({"id": nid, "op": op, "inputs": list(inputs), **attrs})
        return nid

    def cba(self, src, out, k, stride=1, groups=1, act="relu"):
        c = self.node("conv2d", [src], out_channels=out, kernel=k, stride=stride, padding=k // 2, groups=groups,
                      bias=False)
        b = self.node("batchnorm", [c])
        return b if act is None else self.node(act, [b])

    def head(self, src, classes=10):
        return self.node("linear", [self.node("flatten", [self.node("global_avgpool", [src])])], out_features=classes)

    def spec(self, shape):
        return ArchSpec.from_dict({"input_shape": list(shape), "num_classes": 10, "nodes": self.nodes})


def resnet20(shape):
    h = Hand()
    x = h.cba("input", 16, 3)
    cin = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage and block == 0 else 1
            y = h.cba(h.cba(x, width, 3, stride), width, 3, act=None)
            short = x if stride == 1 and cin == width else h.cba(x, width, 1, stride, act=None)
            x = h.node("relu", [h.node("add", [y, short])])
            cin = width
    h.head(x)
    return h.spec(shape)


def inception_small(shape):
    h = Hand()
    x = h.cba("input", 96, 3)

    def module(x, a, b):
        return h.node("concat", [h.cba(x, a, 1), h.cba(x, b, 3)])

    def down(x, c):
        return h.node("concat", [h.cba(x, c, 3, 2), h.node("maxpool", [x], kernel=3, stride=2, padding=1)])

    x = module(module(x, 32, 32), 32, 48)
    x = down(x, 80)
    for a, b in ((112, 48), (96, 64), (80, 80), (48, 96)):
        x = module(x, a, b)
    x = down(x, 96)
    x = module(module(x, 176, 160), 176, 160)
    h.head(x)
    return h.spec(shape)


def densenet40(shape):
    h = Hand()
    x = h.node("conv2d", ["input"], out_channels=16, kernel=3, padding=1, bias=False)
    channels = 16

    def bn_relu_conv(x, out, k):
        return h.node("conv2d", [h.node("relu", [h.node("batchnorm", [x])])], out_channels=out, kernel=k,
                      padding=k // 2, bias=False)

    for block in range(3):
        for _ in range(12):
            x = h.node("concat", [x, bn_relu_conv(x, 12, 3)])
            channels += 12
        if block < 2:
            x = h.node("avgpool", [bn_relu_conv(x, channels, 1)], kernel=2)
    h.head(h.node("relu", [h.node("batchnorm", [x])]))
    return h.spec(shape)


def mobilenet_v2(shape):
    h = Hand()
    x = h.cba("input", 32, 3, act="relu6")
    cin = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
        for i in range(n):
            stride = s if i == 0 else 1
            y = x if t == 1 else h.cba(x, cin * t, 1, act="relu6")
            y = h.cba(y, cin * t, 3, stride, groups=cin * t, act="relu6")
            y = h.cba(y, c, 1, act=None)
            x = h.node("add", [y, x]) if stride == 1 and cin == c else y
            cin = c
    h.head(h.cba(x, 1280, 1, act="relu6"))
    return h.spec(shape)


HAND_BUILT = {"resnet": resnet20, "inception": inception_small, "densenet": densenet40, "mobilenet": mobilenet_v2}


def _cost(spec):
    c = spec.cost
    return (c.params, c.deployed_params, c.macs, c.activation_bytes, c.weight_bytes, c.output_shape)


@pytest.mark.parametrize("family", sorted(HAND_BUILT))
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_reference_configuration_is_the_hand_built_reference(family, shape):
    space = make_narrow(f"narrow:{family}", shape, 10)
    decoded = space.decode(space.reference_config())
    hand = HAND_BUILT[family](shape)
    assert _cost(decoded) == _cost(hand)
    assert [n.op for n in decoded.nodes] == [n.op for n in hand.nodes]


def test_reference_sizes_match_the_published_models():
    sizes = {f: make_narrow(f, (3, 32, 32), 10).reference_spec().cost.params for f in HAND_BUILT}
    assert 0.26e6 < sizes["resnet"] < 0.28e6  # ResNet-20: 0.27M
    assert 1.6e6 < sizes["inception"] < 1.7e6  # small Inception: 1.65M
    assert 1.0e6 < sizes["densenet"] < 1.1e6  # DenseNet-40 (k=12): 1.0M
    assert 2.2e6 < sizes["mobilenet"] < 2.3e6  # MobileNetV2: 2.2M (2.24M with a 10-way classifier)


def test_plain_reference_is_the_repository_digits_cnn():
    space = make_narrow("narrow:plain", (1, 8, 8), 10)
    decoded = space.decode(space.reference_config())
    hand = ArchSpec.from_dict(digits_small_cnn())
    assert _cost(decoded) == _cost(hand)
    assert [n.op for n in decoded.nodes] == [n.op for n in hand.nodes]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_reference_is_inside_the_limits(family):
    space = make_narrow(family, (3, 32, 32), 10)
    config = space.reference_config()
    assert space.check_config(config) == config
