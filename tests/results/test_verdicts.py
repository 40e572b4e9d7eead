"""Stage 05's verdicts: the checks as paired tests over seeds, the forest's rows and their outcomes,
and the sentences written from them, on numbers whose answer is known."""
from __future__ import annotations

import numpy as np
import pandas as pd

from emolib.results import verdicts as V
from emolib.results.statistics import study_statistics
from emolib.vocab import RESULT_COLUMNS

SEEDS = range(8)


def runs_table(ig_gain: float, roar_loss: float) -> pd.DataFrame:
    """Models of two emotions: anger's ranking helps (IG beats random, ROAR costs more than random
    removal), fear's does nothing (same accuracy as its controls, only seed noise)."""
    rng = np.random.default_rng(0)
    rows = []

    def add(seed, emotion, k, selection, acc):
        row = {c: 0.5 for c in RESULT_COLUMNS}
        row.update(variant="t-emo", emotion=emotion, n_landmarks=k, selection=selection, seed=seed, accuracy=acc)
        rows.append(row)

    for seed in SEEDS:
        base = 0.8 + rng.normal(0, 0.01)
        for emotion, gain, loss in (("anger", ig_gain, roar_loss), ("fear", 0.0, 0.0)):
            add(seed, emotion, 468, "all", base)
            add(seed, emotion, 16, "ig", base + rng.normal(0, 0.01))
            add(seed, emotion, 16, "random", base - gain + rng.normal(0, 0.01))
            add(seed, emotion, 404, "roar", base - loss + rng.normal(0, 0.01))
            add(seed, emotion, 404, "roar_random", base + rng.normal(0, 0.01))
    return pd.DataFrame(rows)


def checks_tables():
    rng = np.random.default_rng(1)
    deletion, randomisation = [], []
    for seed in SEEDS:
        for emotion, effect, rho in (("anger", 0.1, 0.1), ("fear", 0.0, 0.9)):
            r = 0.5 + rng.normal(0, 0.01)
            for curve, sign in (("deletion", -1), ("insertion", +1)):
                deletion.append({"emotion": emotion, "seed": seed, "curve": curve, "order": "ig",
                                 "area": r + sign * effect + rng.normal(0, 0.01), "n_samples": 4, "n_pairs": 20})
                deletion.append({"emotion": emotion, "seed": seed, "curve": curve, "order": "random",
                                 "area": r, "n_samples": 4, "n_pairs": 20})
            for level in (1, 2):
                randomisation.append({"emotion": emotion, "seed": seed, "level": level, "layer": "x",
                                      "spearman_rho": (1.0 if level == 1 else rho) + rng.normal(0, 0.02),
                                      "kendall_tau": 0.0, "top_k_overlap": 0.0, "n_samples": 4})
    return pd.DataFrame(deletion), pd.DataFrame(randomisation)


def test_a_ranking_that_helps_is_supported_and_one_that_does_not_is_not():
    statistics = study_statistics(runs_table(ig_gain=0.08, roar_loss=0.08), full_k=468)
    assert {"k_vs_all", "ig_vs_random", "roar_vs_random"} <= set(statistics["comparison"])
    checks = V.checks_statistics(*checks_tables())
    assert set(checks["comparison"]) == {"deletion_vs_random", "insertion_vs_random", "randomisation"}
    # the randomisation row is the last level's correlation (about 0.1 for anger), not the first's
    rand = checks[checks["comparison"] == "randomisation"].set_index("emotion")
    assert abs(rand.loc["anger", "mean_a"] - 0.1) < 0.05
    forest = V.forest_table(statistics, checks, ["anger", "fear"], full_k=468)
    assert (forest["ci_low"] <= forest["estimate"]).all() and (forest["estimate"] <= forest["ci_high"]).all()
    outcome = forest.set_index(["emotion", "comparison"])["outcome"]
    for comparison in V.FAITHFULNESS:
        assert outcome[("anger", comparison)] == "supports", comparison
    assert outcome[("fear", "randomisation")] == "against"  # the ranking survives randomisation
    for comparison in ("ig_vs_random", "roar_vs_random", "deletion_vs_random", "insertion_vs_random"):
        assert outcome[("fear", comparison)] == "inconclusive", comparison
    verdicts = V.verdict_sentences(forest, ["anger", "fear"]).set_index("emotion")
    assert verdicts.loc["anger", "supports"] == 5 and verdicts.loc["anger", "against"] == 0
    assert verdicts.loc["fear", "supports"] == 0 and verdicts.loc["fear", "against"] == 1
    assert verdicts.loc["anger", "verdict"].startswith("Anger: 5 of 5 faithfulness tests support the ranking")
    assert "survives when the model's weights are randomised" in verdicts.loc["fear", "verdict"]
    anger = verdicts.loc["anger", "verdict"]
    assert "removing IG's top 64 and retraining, against removing 64 random landmarks" in anger
    assert "beats K random landmarks at 1 of 1 K (16)" in verdicts.loc["anger", "verdict"]
    md = V.verdicts_markdown(verdicts.reset_index(), forest, "t")
    assert md.count("\n- ") == 2 and "| anger | ROAR: without IG top 64" in md


def test_a_ranking_that_hurts_goes_against():
    statistics = study_statistics(runs_table(ig_gain=-0.08, roar_loss=-0.08), full_k=468)
    forest = V.forest_table(statistics, V.checks_statistics(None, None), ["anger"], full_k=468)
    outcome = forest.set_index("comparison")["outcome"]
    assert outcome["ig_vs_random"] == "against" and outcome["roar_vs_random"] == "against"
    assert set(forest["comparison"]) == {"k_vs_all", "ig_vs_random", "roar_vs_random"}  # no checks: no rows
