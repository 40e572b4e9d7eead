"""emolib.checks: ranking agreement, deletion and insertion curves, the randomisation check, on
inputs and models whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)

try:  # keep TensorFlow light on a shared 2-core machine
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass

from emolib.checks import agreement as A
from emolib.checks import perturbation as D
from emolib.checks import randomisation as R

P, L = 3, 12
PLANTED = np.array([2, 5, 7, 10])


# ---- agreement -------------------------------------------------------------------------------
def test_agreement_of_known_rankings():
    a = np.arange(10, dtype=float)
    assert A.ranking_agreement(a, a, 3) == pytest.approx({"kendall_tau": 1.0, "spearman_rho": 1.0,
                                                          "top_k_overlap": 1.0})
    rev = A.ranking_agreement(a, -a, 3)
    assert rev["kendall_tau"] == pytest.approx(-1.0) and rev["spearman_rho"] == pytest.approx(-1.0)
    assert rev["top_k_overlap"] == 0.0
    # one swap at the top of 10: tau = 1 - 2 * 1 / 45
    b = a.copy()
    b[[8, 9]] = b[[9, 8]]
    assert A.ranking_agreement(a, b, 2)["kendall_tau"] == pytest.approx(1 - 2 / 45)
    assert A.top_k_overlap(a, b, 2) == 1.0 and A.top_k_overlap(a, b, 1) == 0.0
    assert np.isnan(A.ranking_agreement(np.ones(4), a[:4], 2)["kendall_tau"])
    assert A.chance_overlap(16, 468) == pytest.approx(16 / 468)
    with pytest.raises(ValueError):
        A.top_k_overlap(a, b, 11)
    with pytest.raises(ValueError):
        A.ranking_agreement(a, b[:5], 2)


def test_bootstrap_interval_covers_and_narrows():
    rng = np.random.default_rng(0)
    truth = np.linspace(0, 1, 40)
    noisy = lambda n, s: truth[None] + rng.normal(0, s, size=(n, 40))  # noqa: E731
    a, b = noisy(30, 0.3), noisy(30, 0.3)
    res = A.bootstrap_agreement(a, b, 10, paired=False, n_boot=100, seed=1)
    for m in A.AGREEMENT_MEASURES:
        assert res[f"{m}_low"] <= res[f"{m}_high"]
        # a redraw holds fewer distinct samples, so its rankings are noisier and agree less: the
        # interval lies at or below the all-sample value, never above it
        assert res[f"{m}_low"] <= res[m] + 1e-9
    assert res["kendall_tau"] > 0.5  # both rankings follow the same truth
    wide = A.bootstrap_agreement(noisy(30, 3.0), noisy(30, 3.0), 10, paired=False, n_boot=100, seed=1)
    assert wide["kendall_tau"] < res["kendall_tau"]
    assert (wide["kendall_tau_high"] - wide["kendall_tau_low"]) > (res["kendall_tau_high"] - res["kendall_tau_low"])
    # paired: the same rows on both sides, so a ranking against itself has no spread at all
    same = A.bootstrap_agreement(a, a, 10, paired=True, n_boot=50)
    assert same["kendall_tau_low"] == pytest.approx(1.0) and same["kendall_tau_high"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        A.bootstrap_agreement(a, b[:5], 10, paired=True)


# ---- deletion and insertion ---------------------------------------------------------------------
def planted_model():
    """A model whose answer is known: its logit for class 1 is the summed input of the planted
    landmarks (every frame, both coordinates), minus a bias; nothing else matters."""
    import tf_keras as keras

    w = np.zeros((P, 2, L, 1), dtype=np.float32)
    w[:, :, PLANTED] = 1.0
    inputs = keras.Input(shape=(P, 2, L, 1))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(2, activation="softmax")
    out = dense(flat)
    model = keras.Model(inputs, out)
    kernel = np.stack([np.zeros(w.size), w.ravel()], axis=1).astype(np.float32)
    dense.set_weights([kernel, np.array([0.0, -3.0], np.float32)])
    return model


def test_curve_counts_and_inputs():
    counts = D.curve_counts(L, 4)
    assert counts.tolist() == [0, 3, 6, 9, 12]
    rng = np.random.default_rng(0)
    x, b = rng.normal(size=(P, 2, L, 1)), rng.normal(size=(P, 2, L, 1))
    order = rng.permutation(L)
    dele = D.perturbed_inputs(x, b, order, counts, "deletion")
    ins = D.perturbed_inputs(x, b, order, counts, "insertion")
    np.testing.assert_array_equal(dele[0], x)
    np.testing.assert_array_equal(dele[-1], b)
    np.testing.assert_array_equal(ins[0], b)
    np.testing.assert_array_equal(ins[-1], x)
    # after 3 deletions exactly the first 3 of the order carry the baseline's values
    np.testing.assert_array_equal(dele[1][:, :, order[:3]], b[:, :, order[:3]])
    np.testing.assert_array_equal(dele[1][:, :, order[3:]], x[:, :, order[3:]])
    np.testing.assert_array_equal(ins[1][:, :, order[:3]], x[:, :, order[:3]])
    assert D.curve_area(np.ones(5), counts) == pytest.approx(1.0)
    assert D.curve_area(np.linspace(1, 0, 5), counts) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        D.perturbed_inputs(x, b, order[:-1], counts, "deletion")
    with pytest.raises(ValueError):
        D.perturbed_inputs(x, b, order, counts, "erosion")


def test_the_planted_ranking_beats_random_orders_on_both_curves():
    model = planted_model()
    rng = np.random.default_rng(1)
    n = 6
    inputs = rng.normal(0, 0.1, size=(n, P, 2, L, 1)).astype(np.float32)
    inputs[:, :, :, PLANTED] += 1.0           # positives: the planted landmarks are raised
    baselines = rng.normal(0, 0.1, size=(n, P, 2, L, 1)).astype(np.float32)
    others = np.setdiff1d(np.arange(L), PLANTED)
    planted_first = np.concatenate([PLANTED, others])
    orders = np.concatenate([planted_first[None], D.random_orders(L, 8, 3)])
    res = D.perturbation_curves(model, inputs, baselines, orders, points=L)
    assert res["deletion"].shape == (n, 9, L + 1)
    np.testing.assert_allclose(res["deletion"][:, :, 0], res["insertion"][:, :, -1])  # both: the sample
    # how many samples share a model call changes nothing
    small = D.perturbation_curves(model, inputs, baselines, orders, points=L, batch_size=7)
    np.testing.assert_allclose(small["deletion"], res["deletion"], rtol=1e-6)
    np.testing.assert_allclose(small["insertion_area"], res["insertion_area"], rtol=1e-6)
    dele, ins = res["deletion_area"], res["insertion_area"]
    assert (dele[:, 0] < dele[:, 1:].mean(axis=1)).all()
    assert (ins[:, 0] > ins[:, 1:].mean(axis=1)).all()
    # and the reverse order (planted last) is worse than random on both
    worst = D.perturbation_curves(model, inputs, baselines, planted_first[::-1][None], points=L)
    assert (worst["deletion_area"][:, 0] > dele[:, 1:].mean(axis=1)).all()
    assert (worst["insertion_area"][:, 0] < ins[:, 1:].mean(axis=1)).all()


# ---- randomisation ------------------------------------------------------------------------------
def tiny_emolib_model(seed=0):
    from emolib.models import build_model

    return build_model("t-emo", frames=P, n_landmarks=L, filters=2, lstm_units=3, fc_units=3,
                       kernel_size=(2, 3), dropout=0.0, fc_activation="relu", learning_rate=1e-3, seed=seed)


def test_cascading_randomisation_redraws_from_the_top():
    model = tiny_emolib_model()
    names = R.layers_top_down(model)
    assert names[0] == "fc2" and names[-1] == "conv"
    trained = [w.copy() for w in model.get_weights()]
    fresh = [w + 1.0 for w in trained]
    seen = []
    for level, (name, copy) in enumerate(R.cascading_randomisation(model, seed=5, fresh=fresh), start=1):
        seen.append(name)
        redrawn = set(names[:level])
        for v, w_new, w_old in zip(model.weights, copy.get_weights(), trained):
            owner = next(layer.name for layer in model.layers if any(v is u for u in layer.weights))
            if owner in redrawn:
                np.testing.assert_array_equal(w_new, w_old + 1.0)
            else:
                np.testing.assert_array_equal(w_new, w_old)
    assert seen == names
    for w_now, w_old in zip(model.get_weights(), trained):  # the trained model is left alone
        np.testing.assert_array_equal(w_now, w_old)
    with pytest.raises(ValueError):
        R.randomised_weights(model, len(names) + 1, fresh)
    # the default draw is the model's own initialisation under another seed
    *_, (_, full) = R.cascading_randomisation(model, seed=7)
    from emolib.models import initial_weights

    for a, b in zip(full.get_weights(), initial_weights(model, 7)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_bootstrap_rows_agree_with_the_single_pair_measures():
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(size=(5, 30)), 1)  # rounded: ties
    b = np.round(a + rng.normal(0, 0.5, size=a.shape), 1)
    b[2] = 0.0  # a constant row: no correlation
    rows = {"kendall_tau": A._kendall_rows(a, b), "spearman_rho": A._spearman_rows(a, b),
            "top_k_overlap": A._overlap_rows(a, b, 7)}
    for i in range(len(a)):
        one = A.ranking_agreement(a[i], b[i], 7)
        for m in A.AGREEMENT_MEASURES:
            np.testing.assert_allclose(rows[m][i], one[m], equal_nan=True)
