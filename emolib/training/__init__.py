"""Stage 02: the training protocol for T-EMO and R-EMO, the grid search, the SVM baselines.

Modules: :mod:`~emolib.training.splits` (partitions), :mod:`~emolib.training.inputs` (scaling
statistics, class weights), :mod:`~emolib.training.bank` (many models at once),
:mod:`~emolib.training.fit` (one model alone: the reference the bank is tested against, and the
traced tf-keras model each unit is saved from), :mod:`~emolib.training.units`
(a unit, its key, its fit), :mod:`~emolib.training.stage` (the stage and the grid search),
:mod:`~emolib.training.svm`, :mod:`~emolib.training.summaries`.

One binary model per emotion (that emotion against the others), per variant and per seed:

* **Partition.** Each seed draws its own train / validation / test partition
  (:func:`make_splits`). ``split: subject`` (default) keeps every subject in one part;
  ``split: random`` splits by sequence (the paper's protocol). A flipped copy shares its
  original's subject and sequence, so it always lands in the same part. Parts are stratified by
  emotion. ``test_fraction`` is a fraction of all samples, ``val_fraction`` a fraction of what is
  left for training (the paper: "10% of the training set was reserved for validation").
  Every partition is written to ``results/splits.csv``.
* **Reference.** ``data.reference: first_frame`` subtracts each landmark's position in the
  sequence's first frame (the neutral face) from every frame, so that the input is the movement of
  the expression; ``none`` (default) keeps the paper's absolute coordinates.
* **Scaling.** ``data.normalize: standardize`` standardises each input feature (coordinate x
  landmark) with the mean and standard deviation of that seed's training part (pooled over
  frames); ``global`` subtracts the same means but divides every feature by one standard
  deviation pooled over all features, so that features keep their relative sizes; the
  statistics are saved beside the model, and :func:`emolib.models.model_inputs` rebuilds the exact
  inputs from a LandmarkSet.
* **Fitting.** Adam (``train.learning_rate``), mini-batches of ``train.batch_size`` (the paper:
  16), reshuffled every epoch; the loss is the binary cross-entropy weighted by class
  (``train.class_weight: balanced`` gives each class the same total weight, as scikit-learn's
  ``class_weight="balanced"``). Early stopping watches the validation loss, weighted by the same
  class weights so that it measures what training minimises; after ``train.patience`` epochs
  without improvement, or ``train.epochs``, the weights of the best epoch are restored (also when
  training ran to the last epoch).
* **Seeds.** The seed fixes the partition, the initial weights, the dropout masks and the batch
  order; TensorFlow runs with op determinism, so the same seed gives the same model again on the
  same machine, whatever was trained before it in the same process.
* **Grid search** (``grid.enabled``): every (F, Q, R) of ``params.grid`` is trained as T-EMO on
  the partition of ``grid.seed`` and scored on its validation part (accuracy, ties broken by the
  lower validation loss, then the smaller model); R-EMO reuses T-EMO's choice, as in the paper.
* **Resume.** A finished model is saved under ``models/<variant>/<emotion>/`` with its scaler
  and a JSON record (metrics, learning curve, and the key of everything that shapes it); a model
  whose record holds the same key is not trained again. Files are written atomically, the record
  last, so an interrupted run never leaves a half-written model that passes for a finished one.

Speed: the units of one architecture train together in banks (:mod:`~emolib.training.bank`:
one traced computation for many models; ``train.bank_size``), each unit still with its own
partition, initial weights, batch order, dropout masks and early stopping; each is saved as soon
as it stops. A unit's ``train_seconds`` is its share of its bank's time (each epoch's time split
among the units trained in it, in proportion to their training steps).
"""
from emolib._deprecated import module_getattr as _module_getattr
from emolib.training.splits import ensure_splits, make_splits, split_summary
from emolib.training.stage import check_training_outputs, train_models
from emolib.training.summaries import comparison_table
from emolib.training.svm import train_svms

__all__ = ["train_models", "train_svms", "check_training_outputs", "make_splits", "ensure_splits",
           "split_summary", "comparison_table"]

# Names of the flat ``emolib.training`` module before 0.2 (deprecated; see emolib._deprecated).
__getattr__ = _module_getattr(__name__, {
    "configure_tensorflow": "emolib.models", "TrainedModel": "emolib.models", "model_inputs": "emolib.models",
    "reference_inputs": "emolib.models", "scale_inputs": "emolib.models",
    "fit_scaler": "emolib.training.inputs", "class_weights": "emolib.training.inputs",
    "fit_model": "emolib.training.fit", "binary_metrics": "emolib.training.fit", "FitResult": "emolib.training.fit",
    "check_splittable": "emolib.training.splits", "check_grid": "emolib.training.stage",
    "resolve_landmarks": "emolib.training.units", "svm_features": "emolib.training.svm",
    "load_splits": "emolib._compat", "split_indices": "emolib._compat", "splits_path": "emolib._compat",
    "model_path": "emolib._compat", "load_trained": "emolib._compat", "load_results": "emolib._compat",
    "load_history": "emolib._compat", "history_path": "emolib._compat",
    "cost_summary": "emolib.results.tables", "choices_table": "emolib._compat:training_choices_table",
    "PARTS": "emolib.vocab", "SPLIT_COLUMNS": "emolib.vocab", "RESULT_KEY": "emolib.vocab",
    "RESULT_COLUMNS": "emolib.vocab", "HISTORY_COLUMNS": "emolib.vocab", "HYPER_KEY": "emolib.vocab",
    "HYPER_COLUMNS": "emolib.vocab", "GRID_COLUMNS": "emolib.vocab", "SVM_COLUMNS": "emolib.vocab",
})
