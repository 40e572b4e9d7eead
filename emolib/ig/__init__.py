"""Integrated Gradients on tf-keras models and arrays (paper, equations 1 and 2).

A library with no run folder, parameters file or stage in it, so the engine can be used and tested
on any model with arrays alone:

* :func:`integrated_gradients` (generic engine for any model; exact structured engine for the
  Conv2D + LSTM models of :func:`emolib.models.build_model`), :func:`model_outputs`;
* :func:`quadrature` (right Riemann sum of equation 2, trapezoid, Gauss-Legendre);
* :func:`landmark_mask`, :func:`aggregate_masks`, :func:`rank_landmarks` (from attributions to a
  landmark ranking);
* :func:`alpha_curve` and :func:`completeness_by_steps` (Figure 2, and whether m suffices).
"""
from emolib.ig.completeness import alpha_curve, completeness_by_steps
from emolib.ig.engine import IGResult, integrated_gradients, model_outputs
from emolib.ig.masks import aggregate_masks, landmark_mask, rank_landmarks
from emolib.ig.quadrature import RULES, quadrature
from emolib.ig.structured import BACKENDS, ENGINES, structured_backend

__all__ = ["IGResult", "integrated_gradients", "model_outputs", "quadrature", "RULES", "ENGINES", "BACKENDS",
           "structured_backend", "landmark_mask", "aggregate_masks", "rank_landmarks", "alpha_curve",
           "completeness_by_steps"]
