"""The run folder's catalogue: the variant-suffix rule, the results-table readers."""
from __future__ import annotations

import pandas as pd
import pytest

from emolib.config import parse_params
from emolib.errors import DataError
from emolib.run_folder import RunFolder, current_rows, with_variant
from emolib.vocab import RESULT_COLUMNS


def small_params():
    return parse_params({"emotions": ["anger", "fear"], "seeds": [0, 1], "pruning": {"k": [16]}}, "t")


def rows(**over):
    base = {c: 0.5 for c in RESULT_COLUMNS}
    base.update(variant="t-emo", emotion="anger", n_landmarks=16, selection="ig", seed=0)
    base.update(over)
    return base


def test_variant_files_carry_the_variant_name_except_t_emo(tmp_path):
    run = RunFolder(tmp_path)
    assert with_variant("landmark_ranking.csv", "t-emo") == "landmark_ranking.csv"
    assert with_variant("landmark_ranking.csv", "r-emo") == "landmark_ranking_r-emo.csv"
    assert run.ranking("r-emo") == tmp_path / "results" / "landmark_ranking_r-emo.csv"
    assert run.typical("r-emo") == (tmp_path / "attributions" / "typical_r-emo.csv",
                                    tmp_path / "attributions" / "typical_rows_r-emo.json")
    assert run.attribution("fear") == tmp_path / "attributions" / "fear.npz"
    assert run.attribution("fear", "r-emo") == tmp_path / "attributions" / "r-emo" / "fear.npz"
    assert run.history(run.training_results).name == "history.csv"
    assert run.history(run.pruning_results).name == "pruning_history.csv"


def test_current_rows_keep_the_latest_row_of_each_model_and_the_params_seeds():
    params = small_params()
    table = pd.DataFrame([rows(accuracy=0.6), rows(accuracy=0.7), rows(seed=7), rows(n_landmarks=32),
                          rows(emotion="fear", selection="random")])
    out = current_rows(table, params, n_landmarks=[16], selections=["ig"])
    assert len(out) == 1 and out["accuracy"].iloc[0] == 0.7


def test_results_csv_problems_name_the_file(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(DataError, match=r"pruning.csv: not found"):
        run.read_table(tmp_path / "pruning.csv", RESULT_COLUMNS)
    path = tmp_path / "bad.csv"
    pd.DataFrame([{"variant": "t-emo"}]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"bad.csv: missing column"):
        run.read_table(path, RESULT_COLUMNS)
    path.write_text("")
    with pytest.raises(DataError, match=r"bad.csv: not a readable CSV"):
        run.read_table(path, RESULT_COLUMNS)
