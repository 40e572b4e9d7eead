"""The model-parameter randomisation check (Adebayo et al. 2018, "Sanity checks for saliency
maps"): an explanation that does not change when the model's weights are randomised explains the
input, not the model.

The trained model's layers are re-initialised cascading from the top down (the output layer
first, then the one below it, and so on to the first layer): level 1 re-draws the output layer,
level 2 the output layer and the one below it, ... The weights drawn are the model's own initial
distributions (:func:`emolib.models.initial_weights`) under a seed of their own, so the check is
reproducible; the explanation of each randomised model is then compared with the trained model's
by rank correlation (:mod:`emolib.checks.agreement`).
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import numpy as np


def layers_top_down(model: Any) -> list[str]:
    """The names of the model's layers that hold weights, from the output down to the input.

    Args:
        model: a tf-keras model.

    Returns:
        Layer names, the output layer first.
    """
    return [layer.name for layer in reversed(model.layers) if layer.weights]


def randomised_weights(model: Any, n_layers: int, fresh: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The model's weights with its top ``n_layers`` weighted layers replaced by ``fresh`` ones.

    Args:
        model: a tf-keras model.
        n_layers: how many layers, counted from the output (:func:`layers_top_down`), get fresh
            weights; 0 keeps the trained model.
        fresh: freshly initialised weights, in the order of ``model.weights``.

    Returns:
        A list in the order of ``model.weights`` (as ``model.set_weights`` takes it).

    Raises:
        ValueError: ``n_layers`` out of range, or ``fresh`` of other shapes.
    """
    names = layers_top_down(model)
    if not 0 <= int(n_layers) <= len(names):
        raise ValueError(f"n_layers = {n_layers} must lie in 0..{len(names)}")
    trained = model.get_weights()
    if len(fresh) != len(trained) or any(np.shape(f) != np.shape(t) for f, t in zip(fresh, trained)):
        raise ValueError("fresh weights do not match the model's weights")
    position = {id(v): i for i, v in enumerate(model.weights)}
    redrawn = {position[id(v)] for name in names[:int(n_layers)] for v in model.get_layer(name).weights}
    return [np.asarray(fresh[i], dtype=t.dtype) if i in redrawn else t for i, t in enumerate(trained)]


def cascading_randomisation(model: Any, seed: int,
                            fresh: Optional[Sequence[np.ndarray]] = None) -> Iterator[tuple[str, Any]]:
    """A copy of ``model`` with its layers re-initialised cascading from the top down, one level
    at a time.

    One copy is made and re-weighted in place at each level (a new model per level would cost a
    new trace of every compiled function; the IG engines read a model's weights at each call), so
    use each level's model before asking for the next.

    Args:
        model: a trained tf-keras model (left unchanged).
        seed: the seed of the fresh weights (default draw: :func:`emolib.models.initial_weights`,
            which knows the models of :func:`emolib.models.build_model`).
        fresh: the fresh weights to use instead (any model), in the order of ``model.weights``.

    Yields:
        ``(layer name, model)`` per level: level i re-draws the i top layers, the name the
        lowest of them; the last level re-draws every layer (a fully random model).
    """
    import tf_keras as keras

    if fresh is None:
        from emolib.models import initial_weights

        fresh = initial_weights(model, int(seed))
    copy = keras.models.clone_model(model)
    for level, name in enumerate(layers_top_down(model), start=1):
        copy.set_weights(randomised_weights(model, level, fresh))
        yield name, copy
