"""The docs in docs/ say what the code does: tests hold them to it so they cannot drift.

- docs/archspec.md: its example JSON validates and trains with ``hostside train``, its quoted
  ``arch stats`` figures are the real ones, and every registered op with every attribute has a row;
- docs/config.md: its settings tables are the ones the settings' declarations write, every
  budget, objective and [train] key the code accepts is documented, and nothing documented is
  unknown to the code;
- README.md links every doc; every relative link in the docs resolves; no project file points
  outside the repository to the steering folder.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
ROW_KEY = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def _json_blocks(text: str) -> List[str]:
    return re.findall(r"```json\n(.*?)\n```", text, re.S)


def _sections(path: Path, level: str = "##") -> Dict[str, str]:
    """Heading text -> body, for headings of exactly ``level``."""
    parts = re.split(rf"^{level} (.+)$", path.read_text(), flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _table_keys(text: str) -> Set[str]:
    return {m.group(1) for line in text.splitlines() if (m := ROW_KEY.match(line))}


# ---- archspec.md -------------------------------------------------------------------------

def test_archspec_example_is_valid_and_its_quoted_figures_are_real():
    from hostside.arch.spec import ArchSpec

    text = (DOCS / "archspec.md").read_text()
    blocks = _json_blocks(text)
    assert len(blocks) == 1, "docs/archspec.md should hold exactly one ```json example"
    spec = ArchSpec.from_dict(json.loads(blocks[0]))
    cost = spec.cost
    quoted = re.search(r"example\.json: ([\d,]+) params, ([\d,]+) MACs, ([\d,]+) bytes peak activations", text)
    assert quoted, "docs/archspec.md should quote `hostside arch stats example.json`"
    params, macs, peak = (int(g.replace(",", "")) for g in quoted.groups())
    assert (params, macs, peak) == (cost.params, cost.macs, cost.activation_bytes)
    deployed = re.search(r"deployed params \(batchnorm folded\): ([\d,]+)", text)
    assert deployed and int(deployed.group(1).replace(",", "")) == cost.deployed_params
    used = {node.op for node in spec.nodes}
    assert {"conv2d", "batchnorm", "add", "concat", "linear"} <= used


def test_archspec_documents_every_op_and_its_attributes():
    from hostside.arch.ops import REGISTRY

    rows = {}
    for line in (DOCS / "archspec.md").read_text().splitlines():
        match = ROW_KEY.match(line)
        if match:
            rows[match.group(1)] = line
    for name, op in REGISTRY.items():
        assert name in rows, f"op {name!r} has no row in docs/archspec.md's op table; add one"
        for attribute in op.schema:
            assert f"`{attribute}" in rows[name], f"docs/archspec.md: the row of {name!r} does not name its attribute {attribute!r}"


@pytest.mark.slow
def test_archspec_example_trains_with_hostside_train(tmp_path):
    from hostside.cli import main

    example = tmp_path / "example.json"
    example.write_text(_json_blocks((DOCS / "archspec.md").read_text())[0])
    out = tmp_path / "trained"
    assert main(["train", str(example), "--dataset", "digits", "--epochs", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "model.onnx").is_file() and 0.1 < metrics["accuracy"] <= 1.0


# ---- config.md ---------------------------------------------------------------------------

def _config_sections() -> Dict[str, str]:
    return _sections(DOCS / "config.md")


def _documented(section: str) -> Set[str]:
    sections = _config_sections()
    assert section in sections, f"docs/config.md has no '## {section}' section"
    return _table_keys(sections[section])


def _check(section: str, in_code: Set[str]) -> None:
    documented = _documented(section)
    assert not in_code - documented, f"docs/config.md '{section}' lacks {sorted(in_code - documented)}; add a row for each"
    assert not documented - in_code, f"docs/config.md '{section}' documents {sorted(documented - in_code)}, which the code does not know"


def test_config_doc_tables_are_the_ones_the_settings_declare():
    """The top-level, strategy and space tables are written from the settings' declarations
    (``python -m hostside.search.config_docs``); a setting added, renamed or re-defaulted in
    code without rewriting the page fails here."""
    from hostside.search.config_docs import block_names, render, tables

    text = (DOCS / "config.md").read_text()
    assert block_names(text) == set(tables()), (
        f"docs/config.md generated blocks {sorted(block_names(text) ^ set(tables()))} do not match the declared "
        f"settings; add or remove the <!-- generated: NAME --> blocks")
    assert render(text) == text, "docs/config.md is stale: run `python -m hostside.search.config_docs`"


def test_config_doc_lists_every_budget_objective_and_training_key():
    from hostside.search.config import TRAIN_KEYS
    from hostside.search.objectives import BUDGETS, OBJECTIVES, load_extensions

    load_extensions()  # objectives and budgets other packages register (precision: mult_energy, ...)

    _check("[budgets]", set(BUDGETS))
    _check("Objectives", set(OBJECTIVES))
    _check("[train]", set(TRAIN_KEYS))


def _per_name(section: str) -> Dict[str, str]:
    sections = _config_sections()
    assert section in sections, f"docs/config.md has no '## {section}' section"
    parts = re.split(r"^### `([^`]+)`.*$", sections[section], flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _shipped(names, class_of):
    """Names registered by hostside itself (tests register throw-away strategies of their own)."""
    return [name for name in names if class_of(name).__module__.startswith("hostside.")]


def test_config_doc_has_a_section_per_strategy_and_space():
    from hostside.search.strategies.base import strategy_class, strategy_names
    from hostside.spaces import space_names
    from hostside.spaces.base import registered_spaces

    for section, shipped in (("[strategy] options", _shipped(strategy_names(), strategy_class)),
                             ("[space_options]", _shipped(space_names(), lambda n: registered_spaces()[n]))):
        documented = _per_name(section)
        assert set(documented) == set(shipped), (f"docs/config.md '{section}': subsections "
                                                 f"{sorted(set(documented) ^ set(shipped))} do not match the code")


def test_config_doc_examples_are_accepted_by_the_code(tmp_path):
    """Every ```toml block of docs/config.md loads as a search config."""
    from hostside.search.config import build_config, load_toml

    blocks = re.findall(r"```toml\n(.*?)\n```", (DOCS / "config.md").read_text(), re.S)
    assert blocks, "docs/config.md should show a config file"
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block)
        build_config(load_toml(path), {}, str(path))


# ---- links -------------------------------------------------------------------------------

def _project_files() -> List[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    return [REPO / name for name in listed if name and (REPO / name).is_file()]


def test_readme_links_every_doc():
    readme = (REPO / "README.md").read_text()
    for doc in sorted(DOCS.glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"README.md does not link docs/{doc.name}"


def test_relative_links_in_the_docs_resolve():
    pages = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links {target}, which does not exist"


def test_no_project_file_points_outside_the_repository():
    steering = "../" + "shared"  # spelled in two parts so this file does not match itself
    offenders = []
    for path in _project_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if steering in text or "/work/" + "shared" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"these files point outside the repository (copy what they need in): {offenders}"
