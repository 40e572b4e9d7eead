"""emolib.io.upsert_csv: results tables grow as models finish, a row's key replacing its old row."""
from __future__ import annotations

import pandas as pd

from emolib import io

KEY = ("variant", "emotion", "seed")
COLUMNS = ["variant", "emotion", "seed", "accuracy"]


def _rows(*rows):
    return pd.DataFrame(rows, columns=COLUMNS)


def test_new_rows_replace_those_with_their_key_and_the_others_stay(tmp_path):
    path = tmp_path / "t.csv"
    io.upsert_csv(path, _rows(("t-emo", "anger", 0, 0.5), ("t-emo", "anger", 1, 0.6), ("r-emo", "fear", 0, 0.7)),
                  KEY, columns=COLUMNS)
    table = io.upsert_csv(path, _rows(("t-emo", "anger", 1, 0.9), ("t-emo", "fear", 0, 0.8)), KEY, columns=COLUMNS)
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, table.reset_index(drop=True), check_dtype=False)
    assert list(map(tuple, back.itertuples(index=False))) == [
        ("t-emo", "anger", 0, 0.5), ("r-emo", "fear", 0, 0.7), ("t-emo", "anger", 1, 0.9), ("t-emo", "fear", 0, 0.8)]


def test_keys_compare_column_by_column(tmp_path):
    # Joined into one string, ("a|b", "c") and ("a", "b|c") were the same key.
    path = tmp_path / "t.csv"
    io.upsert_csv(path, _rows(("a|b", "c", 0, 0.1)), KEY, columns=COLUMNS)
    io.upsert_csv(path, _rows(("a", "b|c", 0, 0.2)), KEY, columns=COLUMNS)
    assert len(pd.read_csv(path)) == 2


def test_a_key_read_back_from_the_file_matches_the_same_key_in_memory(tmp_path):
    path = tmp_path / "t.csv"
    io.upsert_csv(path, _rows(("t-emo", "anger", 3, 0.1)), KEY, columns=COLUMNS)
    io.upsert_csv(path, _rows(("t-emo", "anger", 3, 0.2)), KEY, columns=COLUMNS)  # seed 3 read back as int
    assert pd.read_csv(path)["accuracy"].tolist() == [0.2]


def test_a_table_of_another_layout_is_rewritten_from_the_new_rows(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"old": [1, 2]}).to_csv(path, index=False)
    io.upsert_csv(path, _rows(("t-emo", "anger", 0, 0.5)), KEY, columns=COLUMNS)
    assert list(pd.read_csv(path).columns) == COLUMNS and len(pd.read_csv(path)) == 1
