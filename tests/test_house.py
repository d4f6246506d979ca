"""The house rules (docs/architecture.md): imports point down the layers, no function grows past
80 lines, and what a transport needs outside its own files comes from the registry.

The layering is import-linter's contract in pyproject.toml ([tool.importlinter]): the commands
(pushpull/cli) over the harness, the load generator and the analysis, over pushpull/core; the
servers apart. `make lint` runs the same `lint-imports`.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pushpull.core import transports

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pushpull", "loadtests", "analysis", "servers")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_FUNCTION_LINES = 80


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` over the tree at `root` (its own packages first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(
    "module, upward",
    [
        # the bottom layer reaching up into the harness
        ("pushpull/core/transports.py", "from pushpull.harness import procs"),
        # a sibling of the middle layer reaching across to another
        ("loadtests/recorder.py", "import analysis.results"),
        # a server importing the measuring side
        ("servers/clock.py", "from pushpull.core import transports"),
    ],
)
def test_the_contract_fails_on_one_arrow_up_or_across(tmp_path, module, upward):
    """The contract is not vacuous: in a copy of the tree with one import added that points up
    (or across, or into a server), `lint-imports` fails and names that import."""
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("*.pyc"))
    assert lint_imports(copy).returncode == 0, "the copy holds before the change"
    path = copy / module
    text = path.read_text()
    head = text.index("\nfrom __future__ import annotations\n") + len(
        "\nfrom __future__ import annotations\n"
    )
    path.write_text(text[:head] + upward + "  # noqa\n" + text[head:])
    result = lint_imports(copy)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout, result.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout, result.stdout


def functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            yield node.name, node.lineno, node.end_lineno - start + 1


def test_no_function_is_over_80_lines():
    long = [
        f"{path.relative_to(ROOT)}:{line} {name} ({lines} lines)"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for name, line, lines in functions(path)
        if lines > MAX_FUNCTION_LINES
    ]
    assert long == [], "cut these into named pieces: " + "; ".join(long)


def test_the_demo_page_has_a_client_for_every_transport():
    """servers/demo_static/demo.js's client table names exactly the registry's transports with a
    pane (`demo`; the page cannot import the registry; the browser test checks the panes work)."""
    script = (ROOT / "servers" / "demo_static" / "demo.js").read_text()
    table = re.search(r"^const CLIENTS = \{\n(.*?)^\};", script, re.S | re.M)
    assert table, "demo.js has a `const CLIENTS = {...};` table"
    names = re.findall(r'^\s+"?([a-z][a-z0-9-]*)"?:', table.group(1), re.M)
    assert names == transports.demo_names()


def make_dry_run(target: str) -> str:
    result = subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "target, default_set",
    [
        ("bench", "bench"),
        ("perf", None),
        ("capacity", None),
        ("storm", "storm"),
        ("churn", "churn"),
        ("gallery", "gallery"),
        ("noise", "noise"),
    ],
)
def test_the_makefiles_transport_lists_come_from_the_registry(target, default_set):
    commands = make_dry_run(target)
    lists = re.findall(r'--transports "([^"]*)"', commands)
    assert lists, commands
    assert lists[0] == ",".join(transports.default_names(default_set))


def test_no_transport_is_named_in_the_makefile_outside_its_examples():
    """Adding a transport never edits the Makefile: its lists come from the registry."""
    names = "|".join(re.escape(n) for n in sorted(transports.NAMES, key=len, reverse=True))
    found = [
        f"Makefile:{number}: {line.strip()}"
        for number, line in enumerate((ROOT / "Makefile").read_text().splitlines(), 1)
        if not line.lstrip().startswith("#") and re.search(rf"\b({names})\b", line)
    ]
    assert found == []
