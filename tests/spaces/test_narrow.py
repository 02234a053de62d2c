"""Narrow spaces: every configuration decodes, the fast (unvalidated) path builds exactly the
validated network (and, with its interned attributes, the network parsed from its JSON), and
the SearchSpace operators stay within the limits."""

import numpy as np
import pytest

from hostside.arch.cost import analyze
from hostside.arch.spec import ArchSpec
from hostside.calibration.features import spec_features
from hostside.errors import UserError
from hostside.laws.law import Law
from hostside.spaces.narrow import FAMILY_NAMES, NARROW_SPACES, make_narrow


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_trusted_specs_equal_validated_specs(family, shape):
    space = make_narrow(family, shape, 10)
    rng = np.random.default_rng(1)
    law = Law.uniform(space)
    corners = space.configs_from_levels(np.stack([law.low, law.high]))
    for config in corners + law.sample(space, 6, rng) + Law(law.low, law.low + 1).sample(space, 6, rng):
        fast = space.spec(config)  # structures repeat among the last six: the dataflow comes from the cache
        checked = space.decode(config)
        assert fast.to_dict() == checked.to_dict()
        assert (fast.folded_convs, fast.frees) == (checked.folded_convs, checked.frees)
        assert fast.cost.to_dict() == analyze(checked).to_dict()
        assert spec_features(fast, 16) == spec_features(checked, 16)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_narrow_fast_builder_equals_the_parser(family):
    """Nodes built with interned attributes equal the same networks parsed from their JSON."""
    space = make_narrow(family, (3, 32, 32), 10)
    for config in Law.uniform(space).sample(space, 8, np.random.default_rng(2)):
        fast = space.spec(config)
        parsed = ArchSpec.from_dict(fast.to_dict())
        assert fast.content_hash() == parsed.content_hash()
        assert fast.cost.to_dict() == parsed.cost.to_dict()
        assert spec_features(fast, 16) == spec_features(parsed, 16)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_operators_stay_within_limits(family):
    space = make_narrow(family, (1, 8, 8), 10)
    rng = np.random.default_rng(0)
    a, b = space.sample(rng), space.sample(rng)
    for _ in range(20):
        child, operator = space.mutate(a, rng)
        assert operator.startswith("mutate_") and child != a
        assert space.check_config(child) == child
        mixed = space.crossover(a, b, rng)
        assert all(mixed[n] in (a[n], b[n]) for n in space.names)
        space.decode(mixed)
        a = child
    forced, operator = space.mutate(a, rng, operator=space.mutation_operators[0])
    changed = [n for n in space.names if forced[n] != a[n]]
    assert operator == space.mutation_operators[0] == f"mutate_{changed[0]}" and len(changed) == 1


def test_registry_names_and_bad_input():
    assert sorted(NARROW_SPACES) == sorted(f"narrow:{f}" for f in FAMILY_NAMES)
    with pytest.raises(UserError, match="unknown narrow space 'narrow:vgg'.*narrow:resnet"):
        make_narrow("narrow:vgg", (3, 32, 32), 10)
    space = make_narrow("narrow:resnet", (3, 32, 32), 10)
    bad = {**space.reference_config(), "width_1": 999}
    with pytest.raises(UserError, match=r"width_1 = 999 is outside its limits \[1, 256\]"):
        space.decode(bad)
    with pytest.raises(UserError, match="variable 'kernel' is missing"):
        space.decode({k: v for k, v in space.reference_config().items() if k != "kernel"})
