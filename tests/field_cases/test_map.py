"""README.md maps every field case to tests that exist, so the map cannot silently rot."""

import ast
import re
from pathlib import Path

import pytest

README = Path(__file__).with_name("README.md")
REPO_ROOT = Path(__file__).resolve().parents[2]
CASES = [f"C{number}" for number in range(1, 19)]
_HEADING = re.compile(r"^## (C\d+)\s*$")
_NODE = re.compile(r"^- (tests/\S+\.py)::(\S+)$")


def read_map() -> dict[str, list[tuple[str, str]]]:
    """Return each case heading's (file, test) pairs, in the order README.md lists them."""
    cases: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in README.read_text().splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = heading.group(1)
            assert current not in cases, f"{current} has two headings in README.md"
            cases[current] = []
            continue
        node = _NODE.match(line)
        if node:
            assert current is not None, f"node id before the first case heading: {line}"
            cases[current].append((node.group(1), node.group(2)))
    return cases


def defined_tests(path: Path) -> set[str]:
    """Return the test names a file defines: "test_x" and "TestClass::test_x"."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef) and member.name.startswith("test_"):
                    names.add(f"{node.name}::{member.name}")
    return names


MAP = read_map()
LISTED = sorted({node for nodes in MAP.values() for node in nodes})


def test_map_lists_every_case_once():
    assert list(MAP) == CASES


@pytest.mark.parametrize("case", CASES)
def test_map_case_has_a_test(case):
    assert MAP.get(case), f"{case} lists no test in {README.name}"


@pytest.mark.parametrize("path, name", LISTED, ids=[f"{path}::{name}" for path, name in LISTED])
def test_map_listed_test_exists(path, name):
    file = REPO_ROOT / path

    assert file.is_file(), f"{path} is listed in {README.name} but does not exist"
    assert name in defined_tests(file), f"{path} defines no {name}"


def test_map_lists_every_field_case_test():
    # A new test_cN_ function in this folder belongs in the map too.
    listed = {(path, name) for path, name in LISTED}
    for file in sorted(README.parent.glob("test_*.py")):
        path = str(file.relative_to(REPO_ROOT))
        for name in sorted(defined_tests(file)):
            if re.match(r"test_c\d+_", name):
                assert (path, name) in listed, f"{path}::{name} is missing from {README.name}"
