"""Stage 03's checks on a synthetic run whose answer is known (planted landmarks): deletion and
insertion curves, the randomisation check, the stability of the ranking, per-frame attributions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)

try:  # keep TensorFlow light on a shared 2-core machine
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass

from emolib.errors import DataError
from emolib.explain import checks_stage as C
from emolib.explain import faithfulness as F
from emolib.explain.explainer import Explainer
from emolib.vocab import DELETION_COLUMNS, RANDOMISATION_COLUMNS, STABILITY_COLUMNS


@pytest.fixture(scope="module")
def checked_run(tmp_path_factory):
    """A synthetic run with T-EMO models of two seeds, and its checks against the planted ranking."""
    import yaml

    from emolib.landmarks import load_landmarks
    from emolib.models import configure_tensorflow
    from emolib.run_folder import open_run
    from emolib.training import train_models
    from tests.synthetic import planted_landmarks, write_synthetic_run

    root = tmp_path_factory.mktemp("checks")
    # Movement from the first frame, one pooled scale: the tiny models learn the planted motion.
    raw = {"name": "checks-test", "data": {"source": "demo", "reference": "first_frame", "normalize": "global"},
           "frames": 4, "seeds": [0, 1],
           "split": "subject", "test_fraction": 0.25, "val_fraction": 0.2,
           "model": {"filters": 2, "lstm_units": 4, "fc_units": 4},
           "train": {"epochs": 30, "batch_size": 16, "learning_rate": 0.01, "patience": 50, "threads": 1},
           "grid": {"enabled": False}, "svm": {"enabled": False},
           "ig": {"steps": 8, "batch_size": 256, "typical": "centroid"},
           "checks": {"top_k": 20, "deletion": {"samples": 4, "points": 12, "random_orders": 4},
                      "randomisation": {"seeds": 1, "samples": 4},
                      "stability": {"seeds": 2, "samples": 4, "typical": ["centroid", "medoid"], "steps": [32],
                                    "bootstrap": 30}}}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    run_dir = write_synthetic_run(root / "run", root / "params.yaml", subjects=6, frames=4)
    run, params = open_run(run_dir)
    configure_tensorflow(1)
    data = load_landmarks(run.landmarks)
    table = train_models(run, params, data, variants=("t-emo",), progress=False)
    assert table["balanced_accuracy"].mean() > 0.7, "the synthetic models did not learn: nothing to check"
    all_ids = np.asarray(data.landmark_ids)
    planted = planted_landmarks()
    ranking = {e: np.concatenate([planted[e], np.setdiff1d(all_ids, planted[e])]) for e in params.emotions}
    checks = C.run_checks(run, params, data, ranking, progress=False)
    return run, params, data, ranking, checks


def test_checks_write_their_tables(checked_run):
    run, params, data, ranking, checks = checked_run
    C.check_checks(checks, params)
    tables = run.read_checks()
    assert set(tables) == {"deletion", "deletion_curves", "randomisation", "stability"}
    assert list(tables["deletion"].columns) == list(DELETION_COLUMNS)
    assert list(tables["randomisation"].columns) == list(RANDOMISATION_COLUMNS)
    assert list(tables["stability"].columns) == list(STABILITY_COLUMNS)
    # every emotion, both seeds, both curves, both orders
    assert len(checks.deletion) == len(params.emotions) * 2 * 2 * 2
    curves = checks.deletion_curves
    start = curves[curves["replaced"] == 0]
    # deletion starts at the sample, insertion at the baseline: the same for the ranking and random orders
    for curve in ("deletion", "insertion"):
        part = start[start["curve"] == curve].pivot_table(index=["emotion", "seed"], columns="order",
                                                         values="probability")
        np.testing.assert_allclose(part["ig"], part["random"], atol=1e-9)
    # five weighted layers, one seed: five levels per emotion
    assert checks.randomisation.groupby("emotion")["level"].max().eq(5).all()
    assert set(checks.stability["factor"]) == {"seeds", "typical", "steps"}
    frames = run.read_frame_attributions()
    assert set(frames) == set(params.emotions)
    for e, parts in frames.items():
        assert parts["attribution"].shape == (params.frames, data.n_landmarks)
        assert parts["X"].shape == (params.frames, 2, data.n_landmarks)
        assert data.emotion[int(parts["sample"])] == e


def test_the_planted_ranking_beats_random_orders(checked_run):
    """The models learned the planted landmarks: deleting them first lowers the probability faster
    than deleting random landmarks, inserting them first raises it faster (mean over emotions,
    each seed)."""
    _, _, _, _, checks = checked_run
    means = checks.deletion.groupby(["seed", "curve", "order"])["area"].mean().unstack("order")
    for seed in (0, 1):
        assert means.loc[(seed, "deletion"), "ig"] < means.loc[(seed, "deletion"), "random"]
        assert means.loc[(seed, "insertion"), "ig"] > means.loc[(seed, "insertion"), "random"]


def test_randomised_models_explain_differently(checked_run):
    _, _, _, _, checks = checked_run
    by_level = checks.randomisation.groupby("level")["spearman_rho"].mean()
    # the fully random model's ranking is far from the trained one's, and farther than with the
    # output layer alone re-drawn
    assert by_level.iloc[-1] < 0.5
    assert by_level.iloc[-1] < by_level.iloc[0]


def test_more_steps_barely_move_the_ranking(checked_run):
    _, _, _, _, checks = checked_run
    steps = checks.stability[checks.stability["factor"] == "steps"]
    assert (steps["a"] == "8").all() and (steps["b"] == "32").all()
    assert steps["spearman_rho"].mean() > 0.8


def test_checks_are_cached(checked_run):
    run, params, data, ranking, checks = checked_run
    explainer = Explainer(run, params, data)
    areas, _ = F.deletion_study(explainer, ranking, progress=False)
    F.randomisation_check(explainer, progress=False)
    assert explainer.computed == 0 and not explainer._models  # read back, nothing loaded
    pd.testing.assert_frame_equal(areas, checks.deletion, check_dtype=False)
    # another ranking is another study
    reversed_ranking = {e: ids[::-1] for e, ids in ranking.items()}
    other, _ = F.deletion_study(explainer, reversed_ranking, progress=False)
    worse = other.groupby(["curve", "order"])["area"].mean()
    assert worse[("deletion", "ig")] > areas.groupby(["curve", "order"])["area"].mean()[("deletion", "ig")]


def test_ig_of_a_copy_re_weighted_in_place_is_that_of_a_fresh_model(checked_run):
    """The randomisation check re-weights one copy per level: IG must see the new weights."""
    import tf_keras as keras

    from emolib.checks.randomisation import cascading_randomisation

    run, params, data, _, _ = checked_run
    explainer = Explainer(run, params, data)
    trained = explainer.models(0)["happiness"]
    samples = explainer.samples(0, "happiness", "train", 3)
    for level, (_, copy) in enumerate(cascading_randomisation(trained.model, seed=11), start=1):
        in_place = explainer.per_sample_masks(0, "happiness", samples, model=copy, tag=f"level {level}")
        fresh = keras.models.clone_model(trained.model)
        fresh.set_weights(copy.get_weights())
        new = explainer.per_sample_masks(0, "happiness", samples, model=fresh, tag=f"fresh {level}")
        np.testing.assert_allclose(in_place, new, rtol=1e-4, atol=1e-6)


def test_checks_refuse_a_run_without_models(checked_run, tmp_path):
    from emolib import io
    from emolib.landmarks import save_landmarks
    from emolib.run_folder import RunFolder

    run, params, data, ranking, _ = checked_run
    empty = RunFolder(tmp_path / "run").ensure()
    io.write_text(empty.params_path, params.to_yaml())
    save_landmarks(empty.landmarks, data)
    with pytest.raises(DataError):
        C.run_checks(empty, params, data, ranking, progress=False)
