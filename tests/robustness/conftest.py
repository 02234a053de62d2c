"""Robustness tests: every defect a hostile or careless user found gets its
test here. Each asserts a non-zero exit, exactly one error line, no traceback, nothing written
that should not be, and, for the agent, a daemon that still answers (``robustness_helpers``)."""

import sys
from pathlib import Path

# --import-mode=importlib puts no test directory on sys.path; the shared asserts live beside us.
sys.path.insert(0, str(Path(__file__).resolve().parent))
