"""Every command that reads ONNX, on the files users really have (``onnx_corpus``).

Each file gives the figures of its ArchSpec (our exporter's files) or of its dynamic-batch
twin (torch's exports of the same module with the same weights), or exactly one error line
that names what is wrong and what to do: never a traceback, never a stray file. The
commands run in-process (``hostside.cli.main``) so the corpus stays fast; two end-to-end
runs check the same through a real ``hostside`` process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from hostside.arch.spec import ArchSpec
from hostside.cli import main
from tests.arch import onnx_corpus as corpus_files


CALIBRATION = Path(__file__).resolve().parents[2] / "hostside" / "calibration_data" / \
    "amd-epyc-2c-x86_64-ort1.31.1-threads1" / "calibration.json"
COMMANDS = ("stats", "predict", "import", "precision", "quantize", "measure")


@dataclass(frozen=True)
class Case:
    """One corpus file: how to build it, whose figures it must give, what it must refuse."""

    build: Callable[[Path], Path]
    twin: Optional[str] = None  # the dynamic-batch file of the same module and weights
    spec: Optional[str] = None  # the ArchSpec JSON it was exported from
    refused: Dict[str, str] = field(default_factory=dict)  # command -> what the one error line says


def _torch(exporter: str, opset: int, fixed: bool, **kind: bool) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        export = corpus_files.torchscript if exporter == "torchscript" else corpus_files.dynamo
        return export(corpus_files.net(**kind), path, opset, fixed)
    return build


def _constant_nodes(path: Path) -> Path:
    source = path.with_name("constant_nodes_source.onnx")
    return corpus_files.constants_as_nodes(_torch("torchscript", 13, True)(source), path)


def _two_inputs(path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    return corpus_files.torchscript(corpus_files.TwoInputs().eval(), path, 17, True)


_NHWC = {"import": "node '/Transpose' (Transpose): op 'Transpose' has no ArchSpec equivalent",
         "precision": "model input [8, 8, 1] does not fit dataset 'digits' [1, 8, 8]",
         "quantize": "model input [8, 8, 1] does not fit dataset 'digits' [1, 8, 8]"}
_UINT8 = {"import": "(Cast): op 'Cast' has no ArchSpec equivalent",
          "precision": "input 'x0' is uint8; hostside feeds the dataset's float32 images",
          "quantize": "input 'x0' is uint8; hostside feeds the dataset's float32 images"}
CASES: Dict[str, Case] = {
    "ts17_dynamic": Case(_torch("torchscript", 17, False)),
    **{f"ts{opset}_fixed": Case(_torch("torchscript", opset, True), twin="ts17_dynamic") for opset in (11, 13, 17)},
    **{f"ts{opset}_dynamic": Case(_torch("torchscript", opset, False), twin="ts17_dynamic") for opset in (11, 13)},
    **{f"dynamo{opset}_fixed": Case(_torch("dynamo", opset, True), twin="ts17_dynamic") for opset in (17, 20, 21)},
    "dynamo20_dynamic": Case(_torch("dynamo", 20, False), twin="ts17_dynamic"),
    "constant_nodes": Case(_constant_nodes, twin="ts17_dynamic"),
    "shared_dynamic": Case(_torch("torchscript", 17, False, shared=True)),
    "shared_fixed": Case(_torch("torchscript", 17, True, shared=True), twin="shared_dynamic"),
    "nhwc_dynamic": Case(_torch("torchscript", 17, False, nhwc=True), refused=_NHWC),
    "nhwc_fixed": Case(_torch("torchscript", 17, True, nhwc=True), twin="nhwc_dynamic", refused=_NHWC),
    "uint8_fixed": Case(_torch("torchscript", 17, True, uint8=True), refused=_UINT8),
    "two_inputs": Case(_two_inputs, refused={
        "import": "the graph has 2 inputs; ArchSpec networks take exactly one image input, export the network",
        "precision": "the model has 2 inputs ('x0', 'x1'); hostside feeds one image tensor",
        "quantize": "the model has 2 inputs ('x0', 'x1'); hostside feeds one image tensor"}),
    "spec_importable": Case(lambda path: path, spec="spec_importable"),
    "spec_rest": Case(lambda path: path, spec="spec_rest", refused={
        "import": "(Less): op 'Less' has no ArchSpec equivalent"}),
}


@dataclass
class Corpus:
    folder: Path
    files: Dict[str, Path]
    specs: Dict[str, Path]
    split: Path
    runs: Dict[Tuple[str, str], Tuple[int, str, str, Path]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    from hostside.train.datasets import load_dataset
    from hostside.train.splits import make_split

    folder = tmp_path_factory.mktemp("onnx_corpus")
    made = corpus_files.spec_files(folder)
    specs = {name: spec for name, (spec, _) in made.items()}
    files = {}
    for name, case in CASES.items():
        path = Path(made[case.spec][1]) if case.spec else folder / f"{name}.onnx"
        files[name] = case.build(path)
    split = folder / "split.json"
    make_split(load_dataset("digits"), 0).save(split)
    return Corpus(folder, files, specs, split)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working directory: every command must leave it (and the temp folder) as it was."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli(capsys, args: List[str]) -> Tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def _args(command: str, path: Path, out: Path, split: Path) -> List[str]:
    return {
        "stats": ["arch", "stats", str(path), "--json"],
        "predict": ["predict", "--calibration", str(CALIBRATION), str(path), "--json"],
        "import": ["arch", "import", str(path), "--out", str(out)],
        "precision": ["precision", str(path), "--dataset", "digits", "--formats", "half", "--split", str(split),
                      "--out", str(out), "--json"],
        "quantize": ["quantize", str(path), "--dataset", "digits", "--split", str(split), "--out",
                     str(out / "model.int8.onnx"), "--calibration-samples", "8", "--no-measure", "--json"],
        "measure": ["measure", str(path), "--board", "local", "--runs", "2", "--warmup", "0", "--idle-s", "0",
                    "--json"],
    }[command]


def _figures(command: str, out: str, folder: Path) -> Any:
    """What must agree between a file and its twin (or its ArchSpec)."""
    if command == "stats":
        stats = json.loads(out)
        return {k: stats[k] for k in ("params", "macs", "input_shape", "output_shape")}
    if command == "predict":
        return round(json.loads(out)[0]["latency_ms"], 12)
    if command == "import":
        spec = ArchSpec.load(folder / "spec.json")
        return {"ops": sorted(n.op for n in spec.nodes), "params": spec.cost.params, "macs": spec.cost.macs}
    if command == "precision":
        result = json.loads(out)
        return {"float": result["float"]["accuracy"], "half": result["formats"][0]["accuracy"]}
    if command == "quantize":
        return json.loads(out)["float_accuracy"]
    return "latency_ms" in json.loads(out)  # measure: a latency, whatever it is


def _spec_figures(command: str, spec: Path, capsys) -> Any:
    if command in ("stats", "import"):
        loaded = ArchSpec.load(spec)
        cost = loaded.cost
        if command == "import":
            return {"params": cost.deployed_params, "macs": cost.macs}
        return {"params": cost.deployed_params, "macs": cost.macs, "input_shape": list(loaded.input_shape),
                "output_shape": [loaded.num_classes]}
    if command == "predict":
        code, out, _ = _cli(capsys, ["predict", "--calibration", str(CALIBRATION), str(spec), "--json"])
        assert code == 0
        return round(json.loads(out)[0]["latency_ms"], 12)
    return None


def _hostside_temp_dirs() -> set:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("hostside-onnx-")}


def _run(corpus: Corpus, capsys, name: str, command: str) -> Tuple[int, str, str]:
    """The command on a corpus file, run once per module (a twin's figures are reused)."""
    if (name, command) not in corpus.runs:
        out_dir = corpus.folder / "out" / name / command
        code, out, err = _cli(capsys, _args(command, corpus.files[name], out_dir, corpus.split))
        corpus.runs[name, command] = (code, out, err, out_dir)
    code, out, err, _ = corpus.runs[name, command]
    return code, out, err


def _figures_of(corpus: Corpus, capsys, name: str, command: str) -> Any:
    code, out, err = _run(corpus, capsys, name, command)
    assert code == 0, f"{name}: {err}"
    return _figures(command, out, corpus.runs[name, command][3])


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", list(CASES))
def test_every_command_gives_the_figures_or_one_error_line(name, command, corpus, workdir, capsys):
    case = CASES[name]
    temp_before = _hostside_temp_dirs()
    code, out, err = _run(corpus, capsys, name, command)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("hostside: error:")]
    if command in case.refused:
        assert code != 0 and len(errors) == 1 and len(err.strip().splitlines()) == 1, err
        assert case.refused[command] in errors[0], errors[0]
    else:
        assert code == 0 and not errors, err
        got = _figures_of(corpus, capsys, name, command)
        if command == "measure":
            assert got
        elif case.twin is not None:
            assert got == _figures_of(corpus, capsys, case.twin, command)
        elif case.spec is not None:
            want = _spec_figures(command, corpus.specs[case.spec], capsys)
            if want is not None:
                assert ({k: got[k] for k in want} if isinstance(want, dict) else got) == want
    assert sorted(os.listdir(workdir)) == [], "a command left files in the working directory"
    assert _hostside_temp_dirs() == temp_before, "a private copy of the model was left behind"


def test_the_corpus_holds_the_spellings_it_claims(corpus):
    import onnx

    def ops(name: str) -> List[str]:
        return [n.op_type for n in onnx.load(str(corpus.files[name]), load_external_data=False).graph.node]

    def batch(name: str) -> Any:
        dim = onnx.load(str(corpus.files[name]), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
        return dim.dim_value if dim.HasField("dim_value") else dim.dim_param

    for name in CASES:
        if name.endswith("_fixed"):
            assert batch(name) == 1, name
        if name.endswith("_dynamic"):
            assert isinstance(batch(name), str), name
    for name in ("ts11_fixed", "ts17_dynamic", "dynamo21_fixed"):
        assert {"Sub", "Div"} <= set(ops(name)), name  # the scalar input scaling
    for name in ("dynamo17_fixed", "dynamo20_fixed", "dynamo21_fixed", "dynamo20_dynamic"):
        assert corpus.files[name].with_name(corpus.files[name].name + ".data").is_file(), name
    constant_nodes = onnx.load(str(corpus.files["constant_nodes"]))
    assert not constant_nodes.graph.initializer and "Constant" in ops("constant_nodes")
    assert ops("shared_fixed").count("Identity") >= 2  # equal weights shared through Identity
    assert ops("nhwc_fixed")[:3].count("Transpose") == 1
    assert {"Less", "Where"} <= set(ops("spec_rest"))
    opsets = {name: onnx.load(str(corpus.files[name]), load_external_data=False).opset_import[0].version
              for name in ("ts11_fixed", "ts13_fixed", "ts17_fixed", "dynamo17_fixed", "dynamo21_fixed")}
    assert opsets == {"ts11_fixed": 11, "ts13_fixed": 13, "ts17_fixed": 17, "dynamo17_fixed": 17,
                      "dynamo21_fixed": 21}


def test_external_data_travels_with_the_model_and_leaves_nothing_behind(corpus, workdir):
    """End to end through a real process: the dynamo export (MODEL.onnx + MODEL.onnx.data)
    measured on the local board, and its import (weights read from the .data file)."""
    path = corpus.files["dynamo20_fixed"]
    assert path.with_name(path.name + ".data").is_file(), "the dynamo exporter wrote no external data"
    before = _hostside_temp_dirs()
    for args in (["measure", str(path), "--runs", "2", "--warmup", "0", "--idle-s", "0", "--json"],
                 ["arch", "import", str(path), "--out", str(corpus.folder / "e2e")]):
        run = subprocess.run([sys.executable, "-m", "hostside.cli", *args], capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert sorted(os.listdir(workdir)) == [] and _hostside_temp_dirs() == before


def test_a_refused_file_is_one_line_from_a_real_process(corpus, workdir):
    run = subprocess.run([sys.executable, "-m", "hostside.cli", "precision", str(corpus.files["uint8_fixed"]),
                          "--formats", "half", "--split", str(corpus.split), "--out", str(corpus.folder / "u8")],
                         capture_output=True, text=True, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1 and lines[0].startswith("hostside: error:"), run.stderr
    assert "uint8" in lines[0] and sorted(os.listdir(workdir)) == []


@pytest.mark.parametrize("command", ["import", "precision", "measure"])
def test_a_missing_external_data_file_is_one_line_naming_it(command, corpus, workdir, capsys, tmp_path):
    import shutil

    lonely = tmp_path / "alone" / corpus.files["dynamo20_fixed"].name
    lonely.parent.mkdir()
    shutil.copyfile(corpus.files["dynamo20_fixed"], lonely)  # without its .data file
    code, out, err = _cli(capsys, _args(command, lonely, tmp_path / "out", corpus.split))
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert f"'{lonely.name}.data'" in lines[0] and "copy that file next to the model" in lines[0]


def test_runs_analyze_runs_a_fixed_batch_file_image_by_image(corpus):
    """Accuracy needs no batch: a fixed batch of 1 gives its twin's logits. Timing at batch
    100 does, so it is refused in one line instead of timed at another batch."""
    import numpy as np

    from hostside.analysis import predict, time_model
    from hostside.errors import UserError

    x = np.random.default_rng(0).uniform(size=(7, *corpus_files.DIGITS)).astype(np.float32)
    fixed, dynamic = corpus.files["ts17_fixed"], corpus.files["ts17_dynamic"]
    assert np.allclose(predict(fixed, x), predict(dynamic, x), atol=1e-6)
    assert time_model(fixed, x, 1)["logits"].shape == (7, 10)
    with pytest.raises(UserError, match="has a fixed batch of 1, so it cannot be timed at batch 100; export it with"):
        time_model(fixed, x, 100)
