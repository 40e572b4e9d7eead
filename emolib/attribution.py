"""Deprecated: the flat module of emolib 0.1. Its names live in :mod:`emolib.ig` (the engine),
:mod:`emolib.explain` (stage 03), :mod:`emolib.rankings` (ground-truth scores) and
:class:`emolib.run_folder.RunFolder` (the readers); reading one here warns and returns it."""
from emolib._deprecated import module_getattr as _module_getattr

_IG = "emolib.ig"
_TYPICAL = "emolib.explain.typical"
_GLOBAL = "emolib.explain.global_importance"
_DIAG = "emolib.explain.diagnostics"
_OLD = "emolib._compat"

__getattr__ = _module_getattr(__name__, {
    **{n: _IG for n in ("quadrature", "IGResult", "integrated_gradients", "model_outputs", "landmark_mask",
                        "alpha_curve", "completeness_by_steps", "aggregate_masks", "rank_landmarks",
                        "structured_backend", "BACKENDS", "RULES", "ENGINES")},
    **{n: _TYPICAL for n in ("TYPICAL_STRATEGIES", "TYPICAL_DESCRIPTIONS", "check_typical_strategy",
                             "typical_sample", "TypicalBaseline", "choose_typical", "typical_inputs",
                             "write_typical", "load_typical")},
    **{n: _GLOBAL for n in ("GlobalImportance", "global_landmark_importance", "path_curves",
                            "completeness_study", "select_explained")},
    **{n: _DIAG for n in ("top_landmarks_table", "check_global_importance", "variant_available",
                          "compare_rankings", "baseline_agreement", "agreement_table")},
    **{n: "emolib.rankings" for n in ("EYE_CORNERS", "displacement_ranking", "planted_recovery")},
    **{n: _OLD for n in ("typical_paths", "attribution_path", "load_ranking", "load_masks", "load_ground_truth",
                         "region_importance_table")},
    "choices_table": "emolib._compat:ig_choices_table",
    "TYPICAL_COLUMNS": "emolib.vocab", "VARIANTS": "emolib.vocab",
})
