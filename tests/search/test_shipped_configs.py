"""Every config the README tells users to run (``configs/*.toml``) is a valid search config:
a bad key there would otherwise show only minutes into a real run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostside.search.config import build_config, load_toml

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def test_the_configs_folder_is_found():
    assert {p.name for p in CONFIGS} >= {"fashion.toml", "cgp_s1.toml", "cgp_s4.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_a_shipped_config_loads_and_round_trips(path):
    config = build_config(load_toml(path), {})
    assert type(config).from_dict(config.to_dict()) == config


def test_the_fashion_job_re_trains_a_capped_front_on_the_debian_files():
    config = build_config(load_toml(next(p for p in CONFIGS if p.name == "fashion.toml")), {})
    assert config.dataset == "/usr/share/datasets/fashion-mnist"
    assert 0 < config.final_models < config.population and config.budgets["params"] == 25000
