"""The dense template: DenseNet connectivity inside each condense layer, costs equal in the
cost model, torch and the ONNX read-back, genes of table 1 (the learning rate only when asked
for), optimizer and lr reaching training."""

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.spaces import make_space
from hostside.spaces.dense import GENES, OPTIMIZERS, TABLE_GENES
from tests.arch.op_examples import assert_costs_agree

G = {"left": "swish", "right": "relu", "condense_layers": 2, "fels": 16, "kernel": 3, "optimizer": "adamax"}


def test_every_fel_reads_all_earlier_maps_of_its_condense_layer():
    space = make_space("dense", (1, 8, 8), 10)
    spec = space.decode(G)
    assert space.divisor == 4 and space.fels_per_layer(G) == [2, 2]
    by_id = {n.id: n for n in spec.nodes}
    assert by_id["c0f0_bn"].inputs == ("input",)
    assert by_id["c0f1_in"].inputs == ("input", "c0f0_drop")
    assert by_id["c0_cat"].inputs == ("input", "c0f0_drop", "c0f1_drop")
    assert by_id["c1f1_in"].inputs == ("c0_pool", "c1f0_drop")
    shapes = {layer.id: layer.output_shape for layer in spec.cost.layers}
    growth = 3
    assert shapes["c0_cat"] == (1 + 2 * growth, 8, 8)
    assert shapes["c0_pool"] == (1 + 2 * growth, 4, 4)
    assert shapes["c1_cat"] == (1 + 4 * growth, 4, 4)
    assert by_id["c0f0_act"].attrs == {"left": "swish", "right": "relu"}


@pytest.mark.parametrize("genes", [G, {**G, "condense_layers": 4, "fels": 52, "kernel": 5, "left": "linear"}])
def test_costs_equal_in_the_cost_model_torch_and_onnx(genes, tmp_path):
    spec = make_space("dense", (1, 8, 8), 10).decode(genes)
    assert spec.num_classes == 10
    assert_costs_agree(spec, (1, 8, 8), tmp_path / "d.onnx")


def test_full_size_template_for_cifar_inputs():
    space = make_space("dense", (3, 32, 32), 10)
    assert space.divisor == 1
    spec = space.decode({**G, "fels": 40, "condense_layers": 3})
    assert space.fels_per_layer({**G, "fels": 40, "condense_layers": 3}) == [14, 13, 13]
    assert spec.cost.params > 100_000


def test_operators_keep_genes_in_table_values_and_optimizer_reaches_training():
    from hostside.train.loop import TrainConfig

    for lr_gene, genes in ((False, TABLE_GENES), (True, GENES)):
        space = make_space("dense", (1, 8, 8), 10, lr_gene=lr_gene)
        rng = np.random.default_rng(3)
        for _ in range(40):
            a, b = space.sample(rng), space.sample(rng)
            assert set(a) == set(genes)
            child = space.crossover(a, b, rng)
            assert all(child[g] in (a[g], b[g]) for g in genes)
            mutant, gene = space.mutate(child, rng)
            assert [g for g in genes if mutant[g] != child[g]] == [gene]
            space.check(mutant)
        TrainConfig(**space.training_overrides(space.sample(rng)))
    assert set(OPTIMIZERS) == {"adam", "sgd", "adagrad", "adamax", "nadam"}
    assert make_space("dense", (1, 8, 8), 10).training_overrides(G) == {"optimizer": "adamax"}
    with_lr = make_space("dense", (1, 8, 8), 10, lr_gene=True)
    assert with_lr.training_overrides({**G, "lr": 0.002}) == {"optimizer": "adamax", "lr": 0.002}
    with pytest.raises(UserError, match="gene 'lr' is missing"):
        with_lr.check(G)


def test_bad_genes_and_options_are_one_line():
    space = make_space("dense", (1, 8, 8), 10)
    with pytest.raises(UserError, match="gene 'optimizer' = 'rmsprop' is not allowed"):
        space.decode({**G, "optimizer": "rmsprop"})
    with pytest.raises(UserError, match="option 'activations': 'gelu' is not allowed"):
        make_space("dense", (1, 8, 8), 10, activations=["relu", "gelu"])
    with pytest.raises(UserError, match="option 'optimizers': 'rmsprop' is not allowed"):
        make_space("dense", (1, 8, 8), 10, optimizers=["rmsprop"])
