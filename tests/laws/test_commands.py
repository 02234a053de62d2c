"""The ``hostside laws`` commands end to end: learn writes laws.json and a PNG, sample writes
valid ArchSpec files, bad input is one line and exit 2."""

import json

import pytest

from hostside.arch.spec import ArchSpec
from hostside.cli import main
from hostside.laws.store import load_laws

SMALL_GA = ["--n-init", "20", "--n-steps", "40", "-k", "3"]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    out = tmp_path_factory.mktemp("laws")
    code = main(["laws", "learn", "--space", "narrow:resnet", "--metric", "params", "--target", "1e4", "2e4",
                 "--out", str(out), *SMALL_GA])
    assert code == 0
    return out


def test_learn_writes_laws_and_png(learned):
    body, space, laws = load_laws(learned / "laws.json")
    assert space.name == "narrow:resnet" and len(laws) == 3
    assert body["target"] == {"tau1": 1e4, "tau2": 2e4}
    assert body["settings"]["n_init"] == 20 and body["settings"]["n_eval"] == 10
    assert (learned / "laws.png").stat().st_size > 10_000
    low, high = body["reachable_range"]
    assert low < 1e4 < 2e4 < high


def test_sample_writes_valid_specs_from_the_laws(learned, tmp_path):
    out = tmp_path / "archs"
    assert main(["laws", "sample", str(learned / "laws.json"), "-n", "7", "--out", str(out)]) == 0
    files = sorted(out.glob("arch_*.json"))
    assert len(files) == 7
    index = json.loads((out / "index.json").read_text())["networks"]
    body, space, laws = load_laws(learned)
    for entry, file in zip(index, files):
        spec = ArchSpec.load(file)
        assert spec.cost.params == entry["params"] and spec.content_hash() == entry["sha256"]
        rank = int(entry["law"][3:])
        assert laws[rank].contains(space, entry["config"])


def test_sample_uniform_and_tampered_file(learned, tmp_path, capsys):
    out = tmp_path / "uniform"
    assert main(["laws", "sample", "--uniform", "--space", "narrow:densenet", "--input-shape", "1,8,8",
                 "-n", "3", "--out", str(out)]) == 0
    assert ArchSpec.load(out / "arch_00002.json").input_shape == (1, 8, 8)
    tampered = tmp_path / "laws.json"
    tampered.write_text((learned / "laws.json").read_text().replace('"width_1": [', '"width_1": [ 0, '))
    assert main(["laws", "sample", str(tampered), "-n", "1", "--out", str(tmp_path / "x")]) == 2
    assert "checksum mismatch" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--space", "narrow:resnet", "--target", "2e4", "1e4"], "tau1 < tau2, got 20000 >= 10000"),
    (["--space", "narrow:resnet", "--target", "1", "10"], "outside what narrow:resnet can reach (about ["),
    (["--space", "narrow:vgg", "--target", "1e4", "2e4"], "unknown narrow space 'narrow:vgg'"),
    (["--space", "narrow:resnet", "--metric", "flops", "--target", "1e4", "2e4"], "unknown metric 'flops'"),
    (["--space", "narrow:resnet", "--metric", "latency_ms", "--target", "1", "2"], "latency_ms needs a calibration"),
    (["--space", "narrow:resnet", "--metric", "latency_ms", "--board", "nosuch", "--target", "1", "2"], "nosuch"),
])
def test_bad_input_is_one_line(argv, message, tmp_path, capsys):
    assert main(["laws", "learn", *argv, "--out", str(tmp_path), *SMALL_GA]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "laws.json").exists()


def test_latency_metric_with_a_calibration(tmp_path, shipped_calibration):
    assert main(["laws", "learn", "--space", "narrow:plain", "--input-shape", "1,8,8", "--metric", "latency_ms",
                 "--calibration", shipped_calibration, "--target", "0.01", "0.05", "--out", str(tmp_path), *SMALL_GA]) == 0
    body, _, _ = load_laws(tmp_path)
    assert body["metric"]["calibration"]["board"] == "local"
    assert body["laws"][0]["validation"]["median"] > 0
