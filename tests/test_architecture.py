"""The architecture is checked, not only drawn: the import contracts in pyproject.toml, no import
circles, ruff's rules, one definition per vocabulary name, and the old names of 0.1 still
importable (with a DeprecationWarning)."""
from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "emolib"


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it comes with `pip install -e '.[test]'` (make install)")
    return found


def test_import_contracts_hold():
    proc = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout


def test_no_import_circles():
    import grimp

    graph = grimp.build_graph("emolib", exclude_type_checking_imports=True)
    circles = [(a, b) for a in sorted(graph.modules) for b in graph.find_modules_directly_imported_by(a)
               if graph.chain_exists(importer=b, imported=a)]
    assert circles == []


def test_ruff_passes():
    proc = subprocess.run([_tool("ruff"), "check", "--no-cache", "emolib", "tests", "benchmarks", "tools"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_the_vocabulary_is_defined_once():
    """The names of emolib.vocab are defined there and nowhere else in the package."""
    vocab = _top_level_names(PACKAGE / "vocab.py")
    twice = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "vocab.py":
            continue
        clash = vocab & _top_level_names(path)
        if clash:
            twice[str(path.relative_to(REPO))] = sorted(clash)
    assert twice == {}


def test_public_names_are_defined_once():
    """No two modules define the same public function or class (a renamed one keeps its old
    name only as a deprecated alias, which defines nothing)."""
    seen: dict[str, str] = {}
    twice = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                where = str(path.relative_to(REPO))
                if node.name in seen and node.name not in ("main",):
                    twice.append((node.name, seen[node.name], where))
                seen.setdefault(node.name, where)
    assert twice == []


def test_no_module_is_too_long():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 700}
    assert long == {}


@pytest.mark.parametrize("old, name, new", [
    ("emolib.attribution", "integrated_gradients", "emolib.ig"),
    ("emolib.attribution", "global_landmark_importance", "emolib.explain.global_importance"),
    ("emolib.attribution", "planted_recovery", "emolib.rankings"),
    ("emolib.extraction", "prepare_landmarks", "emolib.data.stage"),
    ("emolib.extraction", "FaceMeshExtractor", "emolib.data.facemesh"),
    ("emolib.datasets", "read_ckplus", "emolib.data.sources"),
    ("emolib.demo", "write_demo_dataset", "emolib.data.demo"),
    ("emolib.training", "model_inputs", "emolib.models"),
    ("emolib.training", "RESULT_COLUMNS", "emolib.vocab"),
    ("emolib.results", "paired_test", "emolib.results.statistics"),
    ("emolib.plots.training", "cost_figure", "emolib.plots.training"),
])
def test_old_names_still_import_with_a_deprecation_warning(old, name, new):
    module = importlib.import_module(old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(module, name)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
    assert value is not None


def test_old_functions_that_became_methods_still_work(tmp_path):
    from emolib.run_folder import RunFolder

    run = RunFolder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from emolib import training

        assert training.model_path(run, "t-emo", "anger", 468, "all", 0) == run.model("t-emo", "anger", 468, "all", 0)
        assert training.history_path(run.training_results) == run.history(run.training_results)
        with pytest.raises(AttributeError):
            training.no_such_name  # noqa: B018
