"""Every third-party module the tree imports is declared in pyproject.toml, and installed.

Why: a package installed by hand on a developer's machine hides a missing declaration until a
fresh machine runs the tests (onnxscript once did exactly that). The imports are read with
``ast`` from every file under hostside/, device_agent/, tests/ and benchmarks/ (also those
inside functions and ``try`` blocks), mapped to distributions with
``importlib.metadata.packages_distributions()`` and compared with the declared requirements.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("hostside", "device_agent", "tests", "benchmarks")
PROJECT = "hostside"

#: Distributions no line of ours imports but a library we call imports at run time, and that
#: library does not depend on: name -> what needs it.
RUNTIME_ONLY = {
    "onnxscript": "torch.onnx.export(..., dynamo=True) in tests/arch",
    "pytest-xdist": "scripts/test.sh (the suite runs on one pytest worker per core)",
}


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name (ml_dtypes == ml-dtypes == ML.Dtypes)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"pyproject.toml: cannot read the requirement {requirement!r}"
    return normalise(match.group(1))


def declared() -> Dict[str, List[str]]:
    """Declared distribution -> the extras (or "dependencies") that declare it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project.get("dependencies", []), **project.get("optional-dependencies", {})}
    found: Dict[str, List[str]] = {}
    for group, requirements in groups.items():
        for requirement in requirements:
            name = requirement_name(requirement)
            if name != PROJECT:
                found.setdefault(name, []).append(group)
    return found


def python_files() -> Iterator[Path]:
    for root in SCANNED:
        yield from sorted((REPO / root).rglob("*.py"))


def local_names() -> Set[str]:
    """Top-level names that resolve to the tree itself: our packages and helper modules
    that tests load by path (``onnx_models``, ``builders``, ...)."""
    names = set(SCANNED)
    for path in python_files():
        names.add(path.stem)
        names.update(part for part in path.relative_to(REPO).parts[:-1])
    return names


@functools.lru_cache(maxsize=1)
def third_party_imports() -> Dict[str, List[str]]:
    """Top-level module -> the files that import it (absolute imports that are not ours or stdlib)."""
    ours = local_names()
    found: Dict[str, List[str]] = {}
    for path in python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ours and top != "__future__":
                    found.setdefault(top, []).append(str(path.relative_to(REPO)))
    return found


def distributions_of(module: str, mapping: Dict[str, List[str]]) -> Set[str]:
    return {normalise(d) for d in mapping.get(module, [])} | {normalise(module)}


def test_every_third_party_import_is_declared_in_pyproject():
    mapping = importlib.metadata.packages_distributions()
    wanted = declared()
    missing: List[Tuple[str, str, str]] = []
    for module, files in sorted(third_party_imports().items()):
        if not distributions_of(module, mapping) & set(wanted):
            providers = ", ".join(sorted(mapping.get(module, []))) or "no installed distribution"
            missing.append((module, providers, files[0]))
    assert not missing, "imported but not declared in pyproject.toml (add them to [host] or dev):\n" + "\n".join(
        f"  import {m} (from {p}) in {f}" for m, p, f in missing)


def test_runtime_only_dependencies_are_declared():
    wanted = declared()
    for name, reason in RUNTIME_ONLY.items():
        assert normalise(name) in wanted, f"{name} is needed by {reason}; declare it in pyproject.toml"


def test_every_declared_dependency_is_installed():
    """The environment running the tests is the one pyproject.toml describes (markers honoured)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    absent = []
    for requirement in requirements:
        name = requirement_name(requirement)
        marker = requirement.split(";", 1)[1].strip() if ";" in requirement else ""
        if name == PROJECT or (marker and not _marker_holds(marker)):
            continue
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            absent.append(requirement)
    assert not absent, f"declared but not installed: {absent}; run pip install -e '.[dev]'"


def _marker_holds(marker: str) -> bool:
    """The one marker form pyproject.toml uses: python_version < / >= 'X.Y'."""
    match = re.fullmatch(r"python_version\s*(<|>=|<=|>|==)\s*['\"](\d+)\.(\d+)['\"]", marker)
    assert match, f"pyproject.toml: marker {marker!r} is not understood by this test; extend _marker_holds"
    version = (int(match.group(2)), int(match.group(3)))
    ops = {"<": sys.version_info[:2] < version, ">=": sys.version_info[:2] >= version,
           "<=": sys.version_info[:2] <= version, ">": sys.version_info[:2] > version, "==": sys.version_info[:2] == version}
    return ops[match.group(1)]


def test_the_scan_sees_the_imports_it_must():
    """Guards the scanner itself: it finds imports in functions and try blocks, and skips ours."""
    imports = third_party_imports()
    assert {"numpy", "torch", "onnxruntime", "pytest", "websocket"} <= set(imports)
    assert "hostside" not in imports and "device_agent" not in imports and "json" not in imports
