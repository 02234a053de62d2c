"""The public block builder: each block is the network it says, shapes tracked by the
builder are those of the cost model, and errors are named (or deferred when not strict)."""

import pytest

from hostside.arch.blocks import SpecBuilder, same_padding
from hostside.arch.build import build_module, count_params
from hostside.arch.spec import INPUT, SpecError


def _ops(spec):
    return [n.op for n in spec.nodes]


def _check_shapes(b: SpecBuilder, spec):
    for layer in spec.cost.layers:
        assert b.shape(layer.id) == layer.output_shape, layer.id


def test_conv_bn_act_drops_the_bias_before_a_batchnorm_and_pads_same():
    b = SpecBuilder((3, 16, 16))
    x = b.conv_bn_act(INPUT, 8, 3)
    assert b.shape(x) == (8, 16, 16)
    assert [n.op for n in b.nodes] == ["conv2d", "batchnorm", "relu"]
    assert b.nodes[0].attrs["bias"] is False and b.nodes[0].attrs["padding"] == (1, 1)
    y = b.conv_bn_act(x, 4, 5, bn=False, act=None)
    assert b.nodes[-1].op == "conv2d" and b.nodes[-1].attrs["bias"] is True and b.shape(y) == (4, 16, 16)
    assert same_padding(3, dilation=2) == 2 and same_padding([5, 1]) == [2, 0]


@pytest.mark.parametrize("stride, width, projected", [(1, 8, False), (2, 8, True), (1, 16, True)])
def test_residual_projects_the_shortcut_only_when_stride_or_width_change(stride, width, projected):
    b = SpecBuilder((8, 16, 16))
    x = b.residual(INPUT, width, stride=stride)
    b.head(x, 10)
    spec = b.build()
    assert _ops(spec).count("conv2d") == (3 if projected else 2)
    assert b.shape(x) == (width, 16 // stride, 16 // stride)
    add = next(n for n in spec.nodes if n.op == "add")
    assert (add.inputs[1] == INPUT) is not projected
    _check_shapes(b, spec)


def test_bottleneck_inception_dense_and_mobile_blocks_have_their_shapes():
    b = SpecBuilder((3, 32, 32), id_format="n{number}_{op}")
    x = b.conv_bn_act(INPUT, 16, 3)
    x = b.bottleneck(x, 32, mid_channels=8, stride=2)
    assert b.shape(x) == (32, 16, 16)
    x = b.inception(x, branch1=8, branch3=(8, 12), branch5=(4, 6), pool_proj=5)
    assert b.shape(x) == (8 + 12 + 6 + 5, 16, 16)
    x = b.dense_block(x, layers=3, growth=4, bottleneck=2)
    assert b.shape(x) == (31 + 3 * 4, 16, 16)
    x = b.transition(x, 16)
    assert b.shape(x) == (16, 8, 8)
    x = b.depthwise_separable(x, 24, stride=2)
    assert b.shape(x) == (24, 4, 4)
    y = b.inverted_residual(x, 24, expand=4)
    assert b.nodes[-1].op == "add" and b.shape(y) == (24, 4, 4)
    z = b.inverted_residual(y, 32, expand=2)
    assert b.nodes[-1].op == "batchnorm" and b.shape(z) == (32, 4, 4)
    b.head(z, 10, hidden=(20,), dropout=0.1)
    spec = b.build(name="blocks")
    assert spec.nodes[0].id == "n1_conv2d"
    depthwise = [n for n in spec.nodes if n.op == "conv2d" and n.attrs["groups"] > 1]
    assert len(depthwise) == 3 and all(n.attrs["groups"] == n.attrs["out_channels"] for n in depthwise)
    _check_shapes(b, spec)
    assert count_params(build_module(spec)) == spec.cost.params


def test_a_strict_builder_names_the_node_that_does_not_fit():
    b = SpecBuilder((1, 8, 8))
    with pytest.raises(SpecError, match="node 'conv2d0': conv2d kernel 11x11"):
        b.add("conv2d", INPUT, out_channels=4, kernel=11)
    with pytest.raises(SpecError, match="node 'x': input 'nowhere' is not a node id"):
        b.add("relu", "nowhere", id="x")
    with pytest.raises(SpecError, match="unknown op 'gelu'"):
        b.add("gelu", INPUT)
    with pytest.raises(SpecError, match="conv2d needs attribute 'kernel'"):
        b.add("conv2d", INPUT, out_channels=4)


def test_a_lenient_builder_defers_shape_errors_to_build():
    b = SpecBuilder((1, 8, 8), strict=False)
    a = b.add("conv2d", INPUT, out_channels=4, kernel=3)  # 6x6
    c = b.add("conv2d", INPUT, out_channels=4, kernel=5)  # 4x4
    m = b.merge("add", [a, c])
    assert b.shape(m) == (4, 4, 4)  # by formula
    b.head(m, 10, global_pool=False)
    with pytest.raises(SpecError, match="node 'add2': add inputs of 6x6 and 4x4 cannot be aligned"):
        b.build()
    assert b.to_dict(10)["nodes"][2]["op"] == "add"
