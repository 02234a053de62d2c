"""``hostside calibrate --from-measurements``: fitting from a CSV of models and figures.

The figures are synthetic: a known additive formula over the real kernel features of real
NB201 networks (timing real networks would be too slow for a test), so how well the fit
recovers them is a fact the test can check; every bad input is one line naming the row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest

from hostside.arch.nb201 import nb201_spec
from hostside.calibration.artifact import load_calibration
from hostside.calibration.features import FEATURE_NAMES, spec_features
from hostside.calibration.foreign import foreign_warning
from hostside.cli import main

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_1x1~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|",
    "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|skip_connect~1|none~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|avg_pool_3x3~2|",
    "|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_3x3~0|none~1|skip_connect~2|",
]
#: The board the synthetic figures pretend to come from: ms per unit of some kernel features.
COSTS_MS = {"ops": 0.004, "gemm_conv_macs": 4e-7, "gemm_pointwise_macs": 6e-7, "cheap_eltwise_bytes": 2e-7,
            "plain_pool_bytes": 5e-7}
FLOOR_MS = 0.05


def synthetic_ms(spec, scale: float = 1.0) -> float:
    f = dict(zip(FEATURE_NAMES, spec_features(spec, "tflite-arm64")))
    return scale * (FLOOR_MS + sum(c * f[name] for name, c in COSTS_MS.items()))


def write_csv(folder: Path, archs: List[str], scale: float = 1.0, energy: bool = False,
              extra: Optional[List[str]] = None, onnx_rows: int = 0) -> Path:
    """A measurements CSV of NB201 networks (the first ``onnx_rows`` as exported ONNX files,
    the others as ArchSpec JSON) with the synthetic board's figures."""
    from hostside.arch.build import build_module
    from hostside.arch.export import export_onnx

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["model,latency_ms" + (",energy_mj" if energy else "")]
    for k, arch in enumerate(archs):
        spec = nb201_spec(arch)
        name = f"net{k}.onnx" if k < onnx_rows else f"net{k}.json"
        if k < onnx_rows:
            export_onnx(build_module(spec), folder / name, check=False)
        else:
            spec.save(folder / name)
        ms = synthetic_ms(spec, scale)
        lines.append(f"{name},{ms:.6f}" + (f",{3.0 * ms:.6f}" if energy else ""))
    path = folder / "measurements.csv"
    path.write_text("\n".join(lines + (extra or [])) + "\n")
    return path


def test_fits_the_known_formula_and_records_provenance(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wide = nb201_spec(ARCHS[0], input_shape=(3, 24, 40))  # rows may mix input shapes
    wide_ms = synthetic_ms(wide)
    csv_path = write_csv(tmp_path / "pixel", ARCHS, energy=True, onnx_rows=1,
                         extra=[f"wide.json,{wide_ms:.6f},{3.0 * wide_ms:.6f}"])
    wide.save(tmp_path / "pixel" / "wide.json")
    out = tmp_path / "out"
    assert main(["calibrate", "--from-measurements", str(csv_path), "--out", str(out), "--runtime", "tflite",
                 "--isa", "arm64", "--board-name", "pixel4"]) == 0
    printed = capsys.readouterr().out
    assert "Kendall" in printed and "±5%" in printed and "rule set tflite-arm64" in printed
    calibration = load_calibration(out / "calibration.json")
    measurements = calibration.provenance["measurements"]
    assert measurements["sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert measurements["rows"] == len(ARCHS) + 1 and measurements["rule_set"] == "tflite-arm64"
    assert calibration.rules.name == "tflite-arm64"
    assert (out / "predicted_vs_measured.png").stat().st_size > 0
    assert (out / "energy_predicted_vs_measured.png").stat().st_size > 0
    cv = calibration.fit_report["models"][calibration.chosen]["cross_validated"]
    assert cv["within_10pct"] >= 0.9, cv
    unseen = nb201_spec("|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    unseen.save(tmp_path / "unseen.json")
    prediction = calibration.predict(tmp_path / "unseen.json")
    assert prediction.latency_ms == pytest.approx(synthetic_ms(unseen), rel=0.1)
    assert prediction.energy_mj == pytest.approx(3.0 * synthetic_ms(unseen), rel=0.1)
    assert main(["predict", "--calibration", str(out / "calibration.json"), str(tmp_path / "unseen.json"),
                 "--json"]) == 0
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)
    assert row["energy_mj"] > 0 and row["energy_interval_mj"][0] <= row["energy_mj"] <= row["energy_interval_mj"][1]
    # made for a TFLite phone, predicted on this machine: said in one line
    assert len(captured.err.strip().splitlines()) == 1 and "foreign calibration" in captured.err


def test_transfer_rescales_a_source_from_ten_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source_out = tmp_path / "source"
    assert main(["calibrate", "--from-measurements", str(write_csv(tmp_path / "a", ARCHS, energy=True)), "--out",
                 str(source_out), "--runtime", "tflite", "--isa", "arm64"]) == 0
    slower = write_csv(tmp_path / "b", ARCHS[:10], scale=1.7, energy=True)
    out = tmp_path / "transferred"
    assert main(["calibrate", "--from-measurements", str(slower), "--transfer-from",
                 str(source_out / "calibration.json"), "--out", str(out)]) == 0
    capsys.readouterr()
    calibration = load_calibration(out / "calibration.json")
    assert calibration.chosen == "transferred" and calibration.provenance["measurements"]["rows"] == 10
    held_out = [nb201_spec(a) for a in ARCHS[10:]]
    features = calibration.features(held_out)
    predicted = calibration.predict_features(features)[0]
    measured = np.array([synthetic_ms(s, 1.7) for s in held_out])
    assert np.all(np.abs(predicted / measured - 1) < 0.1), predicted / measured
    # energy per inference is the source's energy model rescaled alike
    assert calibration.body["energy"]["chosen_model"] == "transferred"
    energy = calibration.predict_energy_features(features)[0]
    assert np.all(np.abs(energy / (3.0 * measured) - 1) < 0.1), energy / (3.0 * measured)


BAD = {
    "not a number": (["net0.json,abc"], r"row 16: latency_ms 'abc' is not a number"),
    "zero": (["net0.json,0"], r"row 16: latency_ms '0' must be positive"),
    "negative": (["net1.json,-2.5"], r"row 16: latency_ms '-2.5' must be positive"),
    "nan": (["net2.json,nan"], r"row 16: latency_ms 'nan' is not a finite number"),
    "missing file": (["ghost.json,1.0"], r"row 16: model file 'ghost.json' not found"),
    "contradicting duplicate": (["net3.json,99.0"], r"row 16: model 'net3.json' is also on row 5 with other figures"),
    "unreadable onnx": (["broken.onnx,1.0"], r"row 16: model 'broken.onnx' cannot be read"),
    "unreadable json": (["broken.json,1.0"], r"row 16: model 'broken.json' cannot be read"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_naming_the_row(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    extra, message = BAD[case]
    csv_path = write_csv(tmp_path / "m", ARCHS, extra=extra)
    (tmp_path / "m" / "broken.onnx").write_bytes(b"\x08\x01garbage, not a protobuf model")
    (tmp_path / "m" / "broken.json").write_text('{"name": "x", "nodes": 3}')
    out = tmp_path / "out"
    assert main(["calibrate", "--from-measurements", str(csv_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "measurements.csv " + message.split(":")[0] in err
    import re

    assert re.search(message, err), err
    assert not out.exists()


def test_too_few_rows_and_a_bad_header(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    few = write_csv(tmp_path / "few", ARCHS[:4])
    assert main(["calibrate", "--from-measurements", str(few), "--out", str(tmp_path / "o1")]) == 2
    assert "4 distinct measured models; a calibration needs at least 5" in capsys.readouterr().err
    headless = tmp_path / "h.csv"
    headless.write_text("file,ms\nnet0.json,1.0\n")
    assert main(["calibrate", "--from-measurements", str(headless), "--out", str(tmp_path / "o2")]) == 2
    assert "h.csv row 1: the header lacks model, latency_ms" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_foreign_warning_names_what_differs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["calibrate", "--from-measurements", str(write_csv(tmp_path / "pi", ARCHS)), "--out", str(out),
                 "--isa", "arm64", "--board-name", "pi4"]) == 0
    capsys.readouterr()
    calibration = load_calibration(out / "calibration.json")
    pi = {"architecture": "aarch64", "cpu_model": "Cortex-A72", "onnxruntime": {"version": "1.17.0"}}
    assert foreign_warning(calibration, pi) is None
    x86 = {"architecture": "x86_64", "cpu_model": "AMD EPYC", "onnxruntime": {"version": "1.31.1"}}
    line = foreign_warning(calibration, x86)
    assert line is not None and "\n" not in line and "isa arm64" in line and "isa x86_64" in line
