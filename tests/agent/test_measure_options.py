"""The measurement options are declared once (device_agent.protocol) and every reader agrees."""

from __future__ import annotations

import argparse
import inspect

import pytest

from device_agent import bench, protocol


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    protocol.add_measure_arguments(parser)
    return parser


def test_bench_takes_every_declared_option_with_the_declared_default():
    parameters = inspect.signature(bench.measure_model).parameters
    for option in protocol.MEASURE_OPTION_TABLE:
        assert option.name in parameters, f"bench.measure_model lacks {option.name}"
        assert parameters[option.name].default == option.default, option.name


def test_command_line_defaults_are_the_declared_ones():
    parsed = protocol.options_from_args(_parser().parse_args([]))
    assert parsed == protocol.with_defaults({})
    assert protocol.agent_flags(parsed) == []  # nothing but defaults: nothing to say


def test_flags_round_trip_through_the_agent_command_line():
    options = {"threads": 2, "warmup": 0, "min_time_s": 0.5, "power": "rapl", "idle_s": 0.0, "spinning": True,
               "seed": 7, "keep_samples": True, "batch": 4, "timeout_s": 30.0, "memory_limit_mb": 512}
    parsed = protocol.options_from_args(_parser().parse_args(protocol.agent_flags(options)))
    assert parsed == protocol.with_defaults(options)


def test_old_flag_spelling_keeps_working():
    assert _parser().parse_args(["--min-time", "2"]).min_time_s == 2.0


def test_idle_baseline_only_travels_with_a_power_source():
    assert "--idle-s" not in protocol.agent_flags({"idle_s": 3.0})
    assert "idle_s" not in protocol.request_fields({"idle_s": 3.0})
    assert protocol.request_fields({"idle_s": 3.0, "power": "rapl"})["idle_s"] == 3.0


def test_request_always_carries_the_time_limit_and_passes_the_check():
    fields = protocol.request_fields({"warmup": 0, "batch": 1})
    assert fields == {"warmup": 0, "timeout_s": protocol.DEFAULT_TIMEOUT_S}
    request = {"op": "measure", "sha256": "0" * 64, **protocol.request_fields({"runs": 5, "spinning": True})}
    assert protocol.validate_request(request) is None


@pytest.mark.parametrize("flags", [["--threads", "0"], ["--runs", "x"], ["--min-time-s", "nan"], ["--batch", "70000"],
                                   ["--runs", "3", "--min-time-s", "1"]])
def test_out_of_range_flags_are_refused(flags):
    with pytest.raises(SystemExit):
        _parser().parse_args(flags)


def test_unknown_option_is_a_programming_error():
    with pytest.raises(TypeError, match="unknown measurement option"):
        protocol.with_defaults({"thread": 1})
