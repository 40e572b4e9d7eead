"""Project hygiene: pins agree, notebooks are stripped with one parameters cell, commands documented."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PINNED = ("mediapipe", "tensorflow", "tf-keras", "numpy", "protobuf")


def _spec(req: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", req.strip())
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_carries_the_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = dict(_spec(r) for r in project["dependencies"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = dict(_spec(r) for r in pip if not r.startswith("-"))
    for name in PINNED:
        assert env_pins.get(name) == pins[name], \
            f"{name}: environment.yml {env_pins.get(name)} != pyproject {pins[name]}"
    assert pins["mediapipe"] == "==0.10.21" and pins["tensorflow"] == "==2.19.*" and pins["tf-keras"] == "==2.19.*"
    assert project["requires-python"].startswith(">=3.11")


def test_all_five_stage_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == ["01_data_prep", "02_training", "03_global_ig", "04_pruning", "05_results"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_with_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit it stripped"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    # literal, typed, commented defaults, exactly the parameters the runner passes
    names = re.findall(r"^(\w+)\s*:\s*\w+\s*=", source, flags=re.M)
    assert names == ["run_dir", "params_file"]
    assert "papermill" not in nb.get("metadata", {})


def test_readme_commands_exist_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_ray_is_an_optional_extra_that_make_installs():
    """Ray (execution.backend: ray) is pinned as the extra emolib[ray], never a core dependency;
    `make install`/`make test` install it, so the Ray tests run in CI."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["ray"] == ["ray==2.60.0"]
    assert "ray" not in dict(_spec(r) for r in project["dependencies"])
    assert "pip install -q -e '.[test,ray]'" in (REPO / "Makefile").read_text()
