"""Shared test setup: every test gets its own HOSTSIDE_HOME so nothing touches the real one,
the small ONNX models the agent and board tests measure, and one real calibration of this
machine that every search test passes with ``--calibration``.

A search without ``--calibration`` calibrates its board first (the quick suite, about a
minute here) and caches the result in HOSTSIDE_HOME; since every test has a fresh home, a
test that let the search do so would pay for a calibration of its own.

Also shared here: the calibration shipped in the package (``shipped_calibration``, for the laws
and constraint-grid tests that predict latency with it) and the real Fashion-MNIST files of
Debian's ``dataset-fashion-mnist`` with a calibration at their input size (the dataset-reader
tests in tests/train and the Fashion-MNIST search in tests/search).
"""

import importlib.util
import signal
from pathlib import Path

import pytest

# A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored in every
# child: Python then installs no KeyboardInterrupt handler, and the tests that press Ctrl-C on a
# hostside process (SIGINT) would wait for nothing. Restore the handler, so the children started
# by the tests get the default disposition whatever shell started pytest.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _load_onnx_models():
    """tests/agent/onnx_models.py, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("onnx_models", Path(__file__).parent / "agent" / "onnx_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ONNX_MODELS = _load_onnx_models()


@pytest.fixture
def onnx_models():
    """The builders of tests/agent/onnx_models.py, for tests that need another variant."""
    return _ONNX_MODELS


@pytest.fixture(autouse=True)
def _isolated_hostside_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HOSTSIDE_HOME", str(tmp_path_factory.mktemp("hostside_home")))


@pytest.fixture
def conv_model(tmp_path: Path) -> Path:
    return _ONNX_MODELS.conv_net(tmp_path / "conv.onnx")


@pytest.fixture
def slow_model(tmp_path: Path) -> Path:
    return _ONNX_MODELS.slow_net(tmp_path / "slow.onnx")


@pytest.fixture
def huge_model(tmp_path: Path) -> Path:
    return _ONNX_MODELS.huge_intermediate(tmp_path / "huge.onnx")


@pytest.fixture
def not_onnx_file(tmp_path: Path) -> Path:
    return _ONNX_MODELS.not_onnx(tmp_path / "broken.onnx")


@pytest.fixture(scope="session")
def digits_calibration(tmp_path_factory) -> Path:
    """A real quick calibration of the ``local`` board: 16 suite models at the digits input
    size, measured once per session."""
    from hostside.boards import open_board
    from hostside.calibration.calibrate import CALIBRATION_JSON, calibrate

    out = tmp_path_factory.mktemp("calibration")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOSTSIDE_HOME", str(tmp_path_factory.mktemp("calibration_home")))
        with open_board("local") as board:
            calibrate([board], out, threads=1, input_shape=(1, 8, 8), size=16)
    return out / CALIBRATION_JSON


@pytest.fixture(scope="session")
def shipped_calibration() -> str:
    """The calibration shipped in the package, to predict latency with."""
    from hostside.calibration.registry import CALIBRATION_DATA

    found = sorted(CALIBRATION_DATA.glob("*/calibration.json"))
    assert found, f"no calibration shipped under {CALIBRATION_DATA}"
    return str(found[0])


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The real Fashion-MNIST files (scripts/test.sh installs Debian's dataset-fashion-mnist)."""
    if not FASHION_DIR.is_dir():
        pytest.fail(f"{FASHION_DIR} is missing: install Debian's dataset-fashion-mnist (scripts/test.sh does)")
    return FASHION_DIR


@pytest.fixture(scope="session")
def fashion(fashion_dir):
    """Fashion-MNIST as released, read once per test session."""
    from hostside.train.datasets import load_dataset

    return load_dataset(str(fashion_dir))


@pytest.fixture(scope="session")
def fashion_calibration(tmp_path_factory) -> Path:
    """One quick real calibration of this machine at the 1x28x28 input size, shared by the
    Fashion-MNIST searches, so no search pays for the full calibration suite."""
    from hostside.boards import open_board
    from hostside.calibration.calibrate import CALIBRATION_JSON, calibrate

    out = tmp_path_factory.mktemp("calibration")
    with open_board("local") as board:
        calibrate([board], out, threads=1, input_shape=(1, 28, 28), size=16)
    return out / CALIBRATION_JSON


@pytest.fixture
def trained_digits_cnn():
    """A small torch CNN of EA4CNN's shape (conv-BN-ReLU, pool, FC 32 + ReLU, classifier),
    trained briefly on raw digits pixels (0..16) the way a user's own script would: no
    normalisation layer, a batchnorm the exporter folds. In eval mode."""
    import numpy as np
    import torch

    from hostside.train.datasets import load_dataset

    digits = load_dataset("digits")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x, y = torch.from_numpy(np.array(digits.x)), torch.from_numpy(np.array(digits.y))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(4):
        for start in range(0, len(y), 64):
            loss = torch.nn.functional.cross_entropy(net(x[start:start + 64]), y[start:start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()
