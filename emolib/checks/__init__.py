"""Does an explanation hold up? Measures of a landmark ranking's faithfulness and stability that
need no run folder, parameters or stage: arrays and tf-keras models only.

* :mod:`~emolib.checks.agreement`: how far two rankings agree (Kendall's tau, Spearman's rho,
  top-K overlap), with bootstrap confidence intervals over the explained samples;
* :mod:`~emolib.checks.perturbation`: deletion and insertion curves without retraining (landmarks
  replaced by a baseline's values in rank order) and the area under each;
* :mod:`~emolib.checks.randomisation`: the model-parameter randomisation check (Adebayo et al.
  2018): the same model with its layers re-initialised from the top down.

The stages run them on a run folder (:mod:`emolib.explain.faithfulness`,
:mod:`emolib.explain.stability`); ROAR, which retrains, is a selection rule of stage 04.
"""
