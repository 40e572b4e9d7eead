"""The study's vocabulary: every name the stages, the run folder and the tables share, defined once.

Emotions, variants, stages, the allowed values of the parameters that library functions also check
(as ``Literal`` aliases: :mod:`emolib.config` types the parameters with them, and a function reads
the values with ``typing.get_args``), and the columns of every table in the run folder.
"""
from __future__ import annotations

from typing import Literal

# ---- the study ---------------------------------------------------------------------------------
EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
N_LANDMARKS = 468  # MediaPipe FaceMesh

Variant = Literal["t-emo", "r-emo"]
# The two models of the paper: T-EMO trains every weight, R-EMO keeps its convolution random.
VARIANTS: tuple[str, ...] = ("t-emo", "r-emo")
# The variant the paper explains and whose files carry no suffix in the run folder.
PAPER_VARIANT = "t-emo"
VARIANT_LABELS: dict[str, str] = {"t-emo": "T-EMO", "r-emo": "R-EMO"}
# The ``selection`` of stage 02's models: every landmark.
ALL_LANDMARKS = "all"
# Stage 04's selection rules that test a ranking, each with the control it is compared with (same
# K, same seed): KAR keeps the top K (``ig``) against K random landmarks; ROAR removes the top K
# (``roar``) against removing K random ones. ROAR's rows count the landmarks kept (L - K).
SELECTION_CONTROLS: dict[str, str] = {"ig": "random", "roar": "roar_random"}
REMOVAL_SELECTIONS: tuple[str, ...] = ("roar", "roar_random")

STAGES: tuple[str, ...] = ("01_data_prep", "02_training", "03_global_ig", "04_pruning", "05_results")

# ---- allowed values of parameters ----------------------------------------------------------------
DataSource = Literal["demo", "ckplus", "videos", "landmarks"]
MissingFaceFill = Literal["neighbours", "drop_sequence"]
Normalize = Literal["standardize", "global", "none"]
Reference = Literal["none", "first_frame"]
FcActivation = Literal["relu", "tanh", "sigmoid", "elu"]
ClassWeight = Literal["balanced", "none"]
Split = Literal["subject", "random"]
IgRule = Literal["riemann_right", "trapezoid", "gauss_legendre"]
IgInputs = Literal["positives", "all"]
IgTypical = Literal["most_confident", "medoid", "centroid"]
TYPICAL_DESCRIPTIONS: dict[str, str] = {
    "most_confident": "the training sample of that emotion its own model is most sure of",
    "medoid": "the training sample closest to the mean input of that emotion's training samples",
    "centroid": "the mean input of that emotion's training samples, not a real video",
}

IgEngine = Literal["auto", "generic", "structured"]
# Where training banks run (emolib.execution): in this process, or as Ray tasks.
ExecutionBackend = Literal["local", "ray"]

# ---- tables of the run folder ----------------------------------------------------------------------
# data/extraction_report.csv: one row per sequence found.
EXTRACTION_REPORT_COLUMNS: tuple[str, ...] = (
    "sequence", "subject", "emotion", "frames", "frames_without_face", "status", "reason", "face_finder")
EXTRACTION_STATUSES: tuple[str, ...] = ("ok", "filled", "dropped", "skipped", "error")

# results/splits.csv: one row per (seed, sample).
PARTS: tuple[str, ...] = ("train", "val", "test")
SPLIT_COLUMNS: tuple[str, ...] = ("seed", "sample", "sequence", "subject", "emotion", "flipped", "part")

# results/training.csv and results/pruning.csv: one row per trained model, identified by RESULT_KEY.
RESULT_KEY: tuple[str, ...] = ("variant", "emotion", "n_landmarks", "selection", "seed")
RESULT_COLUMNS: tuple[str, ...] = RESULT_KEY + (
    "accuracy", "balanced_accuracy", "f1", "roc_auc", "majority_accuracy", "epochs",
    "train_seconds", "seconds_per_epoch", "params", "trainable_params", "filters", "lstm_units",
    "fc_units", "n_train", "n_val", "n_test", "best_epoch", "val_accuracy", "val_loss",
)
# The learning curves beside a results table.
HISTORY_COLUMNS: tuple[str, ...] = RESULT_KEY + ("epoch", "loss", "val_loss", "accuracy", "val_accuracy")
# results/hyperparameters.csv (the grid search's choices) and results/grid_search.csv (every point).
HYPER_KEY: tuple[str, ...] = ("emotion", "n_landmarks", "selection")
HYPER_COLUMNS: tuple[str, ...] = HYPER_KEY + ("filters", "lstm_units", "fc_units", "val_accuracy")
GRID_COLUMNS: tuple[str, ...] = HYPER_KEY + ("filters", "lstm_units", "fc_units", "val_accuracy",
                                             "val_loss", "epochs", "train_seconds", "chosen")
# results/svm.csv (and the paper's quoted accuracy, ``paper_accuracy``, after these).
SVM_COLUMNS: tuple[str, ...] = ("kernel", "emotion", "seed", "accuracy", "balanced_accuracy", "f1",
                                "majority_accuracy", "n_train", "n_test")

# Stage 03: results/landmark_ranking.csv, results/completeness.csv, attributions/typical.csv.
RANKING_COLUMNS: tuple[str, ...] = ("emotion", "rank", "landmark", "importance", "region")
COMPLETENESS_COLUMNS: tuple[str, ...] = ("emotion", "baseline_emotion", "steps", "mean_abs_gap",
                                         "max_abs_gap", "mean_abs_delta")
TYPICAL_COLUMNS: tuple[str, ...] = ("emotion", "sample", "sequence", "strategy", "score")

# Stage 03's checks (emolib.explain.faithfulness, emolib.explain.stability), reported by stage 05.
# results/deletion.csv: one row per (emotion, seed, curve, order): the mean area under the curve
# over the seed's explained (sample, baseline) pairs; order ``ig`` (the ranking) or ``random``
# (the mean over the random orders).
DELETION_COLUMNS: tuple[str, ...] = ("emotion", "seed", "curve", "order", "area", "n_samples", "n_pairs")
# results/deletion_curves.csv: the mean curves themselves, for figures.
DELETION_CURVE_COLUMNS: tuple[str, ...] = ("emotion", "seed", "curve", "order", "replaced", "share", "probability")
# results/randomisation.csv: one row per (emotion, seed, level): the ranking of the model with its
# top ``level`` layers re-initialised against the trained model's.
RANDOMISATION_COLUMNS: tuple[str, ...] = ("emotion", "seed", "level", "layer", "spearman_rho", "kendall_tau",
                                          "top_k_overlap", "n_samples")
# results/stability.csv: one row per (factor, emotion, a, b): agreement of two rankings with
# bootstrap intervals over the explained samples.
STABILITY_FACTORS: tuple[str, ...] = ("seeds", "typical", "steps")
STABILITY_COLUMNS: tuple[str, ...] = (
    "factor", "emotion", "a", "b", "kendall_tau", "kendall_tau_low", "kendall_tau_high", "spearman_rho",
    "spearman_rho_low", "spearman_rho_high", "top_k_overlap", "top_k_overlap_low", "top_k_overlap_high",
    "chance_overlap", "top_k", "n_a", "n_b", "n_boot")
