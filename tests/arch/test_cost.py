"""The analytic cost model against figures worked out by hand."""

from hostside.arch.spec import ArchSpec


def _spec(nodes, input_shape=(1, 28, 28), num_classes=10):
    return ArchSpec.from_dict({"input_shape": list(input_shape), "num_classes": num_classes, "nodes": nodes})


def test_lenet5_figures_match_the_textbook():
    # LeNet-5 on 1x28x28 with padding 2 on the first conv: 61,706 parameters.
    spec = _spec([
        {"id": "c1", "op": "conv2d", "inputs": ["input"], "out_channels": 6, "kernel": 5, "padding": 2},
        {"id": "t1", "op": "tanh", "inputs": ["c1"]},
        {"id": "s2", "op": "avgpool", "inputs": ["t1"], "kernel": 2},
        {"id": "c3", "op": "conv2d", "inputs": ["s2"], "out_channels": 16, "kernel": 5},
        {"id": "t3", "op": "tanh", "inputs": ["c3"]},
        {"id": "s4", "op": "avgpool", "inputs": ["t3"], "kernel": 2},
        {"id": "f", "op": "flatten", "inputs": ["s4"]},
        {"id": "c5", "op": "linear", "inputs": ["f"], "out_features": 120},
        {"id": "t5", "op": "tanh", "inputs": ["c5"]},
        {"id": "f6", "op": "linear", "inputs": ["t5"], "out_features": 84},
        {"id": "t6", "op": "tanh", "inputs": ["f6"]},
        {"id": "out", "op": "linear", "inputs": ["t6"], "out_features": 10},
    ])
    cost = spec.cost
    assert cost.params == 61_706 == cost.deployed_params
    # conv1 28*28*6*25 + conv3 10*10*16*150 + 400*120 + 120*84 + 84*10
    assert cost.macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert [layer.output_shape for layer in cost.layers[:6]] == [
        (6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 10, 10), (16, 5, 5)]
    # Peak: conv1 output and tanh output alive together (input already freed): 2 * 6*28*28*4.
    assert cost.activation_bytes == 2 * 6 * 28 * 28 * 4
    assert cost.weight_bytes == {"fp32": 4 * 61_706, "fp16": 2 * 61_706,
                                 "int8": (61_706 - 236) + 4 * 236}
    assert cost.layer_counts()["tanh"] == 4


def test_batchnorm_folds_into_a_conv_used_only_by_it():
    spec = _spec([
        {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": 8, "kernel": 3, "bias": False},
        {"id": "bn", "op": "batchnorm", "inputs": ["c"]},
        {"id": "r", "op": "relu", "inputs": ["bn"]},
        {"id": "g", "op": "global_avgpool", "inputs": ["r"]},
        {"id": "f", "op": "flatten", "inputs": ["g"]},
        {"id": "bn2", "op": "batchnorm", "inputs": ["f"]},
        {"id": "fc", "op": "linear", "inputs": ["bn2"], "out_features": 10},
    ])
    cost = spec.cost
    assert cost.params == 72 + 16 + 16 + 90
    # conv gains 8 biases, its batchnorm vanishes; the batchnorm on the vector stays (2 x 8).
    assert cost.deployed_params == (72 + 8) + 16 + 90


def test_batchnorm_after_a_shared_conv_is_not_folded():
    spec = _spec([
        {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 3, "padding": 1},
        {"id": "bn", "op": "batchnorm", "inputs": ["c"]},
        {"id": "sum", "op": "add", "inputs": ["bn", "c"]},
        {"id": "f", "op": "flatten", "inputs": ["sum"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10},
    ], input_shape=(1, 8, 8))
    assert spec.cost.deployed_params == spec.cost.params == 40 + 8 + 2570


def test_add_pools_the_larger_map_and_pads_channels_and_concat_sums_channels():
    spec = _spec([
        {"id": "wide", "op": "conv2d", "inputs": ["input"], "out_channels": 16, "kernel": 3, "stride": 2, "padding": 1},
        {"id": "narrow", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 1},
        {"id": "sum", "op": "add", "inputs": ["wide", "narrow"]},
        {"id": "cat", "op": "concat", "inputs": ["sum", "narrow"]},
        {"id": "g", "op": "global_avgpool", "inputs": ["cat"]},
        {"id": "f", "op": "flatten", "inputs": ["g"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10},
    ], input_shape=(3, 32, 32))
    shapes = {layer.id: layer.output_shape for layer in spec.cost.layers}
    assert shapes["sum"] == (16, 16, 16)
    assert shapes["cat"] == (20, 16, 16)
    assert spec.cost.macs == 16 * 16 * 16 * 27 + 32 * 32 * 4 * 3 + 20 * 10


def test_depthwise_and_dilated_non_square_convs():
    spec = _spec([
        {"id": "dw", "op": "conv2d", "inputs": ["input"], "out_channels": 6, "kernel": [3, 1],
         "groups": 3, "dilation": [2, 1], "padding": [2, 0], "bias": False},
        {"id": "f", "op": "flatten", "inputs": ["dw"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10},
    ], input_shape=(3, 10, 5))
    dw = spec.cost.layers[0]
    assert dw.output_shape == (6, 10, 5)
    assert dw.params == 6 * 1 * 3 * 1
    assert dw.macs == 6 * 3 * 10 * 5


def test_peak_activation_counts_branches_alive_together():
    spec = _spec([
        {"id": "a", "op": "conv2d", "inputs": ["input"], "out_channels": 2, "kernel": 1},
        {"id": "b", "op": "conv2d", "inputs": ["input"], "out_channels": 3, "kernel": 1},
        {"id": "cat", "op": "concat", "inputs": ["a", "b"]},
        {"id": "f", "op": "flatten", "inputs": ["cat"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10},
    ], input_shape=(1, 4, 4))
    plane = 16 * 4
    # while computing cat: a (2 planes), b (3) and cat (5) are alive; the input died after b.
    assert spec.cost.activation_bytes == (2 + 3 + 5) * plane
