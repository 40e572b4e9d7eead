"""Parameters: every shipped file validates; bad files are refused with the file, key and expectation."""
from __future__ import annotations

from pathlib import Path

import pytest

from emolib.config import STAGE_SECTIONS, Params, load_params, parse_params
from emolib.errors import ParamsError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "smoke", "ckplus"])
def test_shipped_params_validate(name):
    params = load_params(REPO / "params" / f"{name}.yaml")
    assert params.name == name
    assert set(params.emotions) == {"anger", "disgust", "fear", "happiness", "sadness", "surprise"}


def test_ckplus_follows_the_paper():
    p = load_params(REPO / "params" / "ckplus.yaml")
    assert len(p.seeds) == 10
    assert sorted({468, *p.pruning.k}, reverse=True) == [468, 234, 128, 64, 32, 16]
    assert p.ig.steps >= 50 and p.grid.enabled and p.pruning.grid_search
    assert p.train.learning_rate == 1e-4 and p.train.batch_size == 16
    assert p.data.source == "ckplus" and p.split == "random"


def _write(tmp_path, text):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    return f


def test_unknown_key_names_file_key_and_expected(tmp_path):
    f = _write(tmp_path, "data:\n  sorce: demo\n")
    with pytest.raises(ParamsError) as exc:
        load_params(f)
    msg = str(exc.value)
    assert str(f) in msg and "data.sorce" in msg and "unknown key" in msg and "source" in msg


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ParamsError, match=r"ig_stepz: unknown key"):
        load_params(_write(tmp_path, "ig_stepz: 5\n"))


@pytest.mark.parametrize("text,key", [
    ("frames: ten\n", "frames"),
    ("frames: 1\n", "frames"),
    ("train:\n  epochs: 0\n", "train.epochs"),
    ("pruning:\n  k: [500]\n", "pruning.k"),
    ("emotions: [anger, joy]\n", "emotions"),
    ("data:\n  source: webcam\n", "data.source"),
    ("seeds: []\n", "seeds"),
    ("grid:\n  filters: [0, 4]\n", "grid.filters"),
    ("model:\n  kernel_size: [3, 3]\n", "model.kernel_size"),
    ("ig:\n  typical: mean\n", "ig.typical"),
])
def test_wrong_type_or_impossible_value(tmp_path, text, key):
    with pytest.raises(ParamsError) as exc:
        load_params(_write(tmp_path, text))
    assert f"  {key}:" in str(exc.value)


def test_source_needing_a_path(tmp_path):
    with pytest.raises(ParamsError, match="data.path is required"):
        load_params(_write(tmp_path, "data:\n  source: ckplus\n"))


def test_missing_file_and_not_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(_write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(_write(tmp_path, "- 1\n- 2\n"))


def test_overrides_apply_and_are_validated(tmp_path):
    f = _write(tmp_path, "name: x\n")
    p = load_params(f, overrides=["train.epochs=7", "pruning.k=[16, 64]", "data.flip=false"])
    assert p.train.epochs == 7 and p.pruning.k == [64, 16] and p.data.flip is False
    with pytest.raises(ParamsError, match="train.epoch: unknown key"):
        load_params(f, overrides=["train.epoch=7"])
    with pytest.raises(ParamsError, match="key=value"):
        load_params(f, overrides=["train.epochs"])


def test_fingerprint_tracks_only_named_sections():
    a = parse_params({})
    b = parse_params({"ig": {"steps": 99}})
    assert a.fingerprint("data") == b.fingerprint("data")
    assert a.fingerprint(*STAGE_SECTIONS["03_global_ig"]) != b.fingerprint(*STAGE_SECTIONS["03_global_ig"])
    assert a.fingerprint(*STAGE_SECTIONS["02_training"]) == b.fingerprint(*STAGE_SECTIONS["02_training"])


def test_resolved_yaml_round_trips(tmp_path):
    p = load_params(REPO / "params" / "demo.yaml")
    f = _write(tmp_path, p.to_yaml())
    assert load_params(f) == p
    assert isinstance(p, Params)


def test_override_through_a_value_is_refused(tmp_path):
    f = _write(tmp_path, "frames: 8\n")
    with pytest.raises(ParamsError, match=r"--set 'frames.x=1': frames is not a section"):
        load_params(f, overrides=["frames.x=1"])


def test_stage_sections_are_derived_from_each_sections_readers():
    """Each stage depends on its own sections and those of the stages it builds on; the SVMs
    change stage 02's and stage 05's results only; the checks (faithfulness and stability)
    stage 03's and stage 05's, never stage 04's models."""
    assert set(STAGE_SECTIONS["01_data_prep"]) == {"data", "frames", "emotions"}
    assert set(STAGE_SECTIONS["02_training"]) == {"data", "frames", "emotions", "seeds", "split", "test_fraction",
                                                   "val_fraction", "model", "train", "grid", "svm"}
    assert set(STAGE_SECTIONS["03_global_ig"]) == set(STAGE_SECTIONS["02_training"]) - {"svm"} | {"ig", "checks"}
    assert set(STAGE_SECTIONS["04_pruning"]) == set(STAGE_SECTIONS["03_global_ig"]) - {"checks"} | {"pruning"}
    assert set(STAGE_SECTIONS["05_results"]) == set(Params.model_fields) - {"execution"}


def test_execution_section_changes_no_stage_and_is_checked():
    """Where the work runs never changes what it computes: no stage's fingerprint reads it."""
    a = parse_params({})
    b = parse_params({"execution": {"backend": "ray", "address": "ray://head:10001", "num_cpus": 2, "num_gpus": 0.5,
                                    "memory": 2**30, "max_retries": 1}})
    assert a.execution.backend == "local" and a.execution.address is None
    assert not any("execution" in sections for sections in STAGE_SECTIONS.values())
    for stage in STAGE_SECTIONS:
        assert a.fingerprint(*STAGE_SECTIONS[stage]) == b.fingerprint(*STAGE_SECTIONS[stage])
        assert a.sections_of(stage) == b.sections_of(stage)
    for bad, match in [({"backend": "dask"}, "execution.backend"), ({"address": "head"}, "execution.address"),
                       ({"address": "ray://head:99999"}, "execution.address"), ({"num_cpus": 0}, "execution.num_cpus"),
                       ({"memory": 0}, "execution.memory"), ({"max_retries": -1}, "execution.max_retries"),
                       ({"workers": 2}, "execution.workers: unknown key")]:
        with pytest.raises(ParamsError, match=match):
            parse_params({"execution": bad})
