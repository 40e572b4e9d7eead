"""The run folder's catalogue (DESIGN.md, "Run folder contract"): every path in it, and the readers
through which a stage reads what an earlier stage wrote.

    runs/<name>/params.yaml, manifest.json, index.html, NN_stage.ipynb/.html, logs/
      data/          landmarks.npz, extraction_report.csv, ground_truth.json (demo), demo_source/
      results/       splits.csv, training.csv, history.csv, svm.csv, hyperparameters.csv,
                     grid_search.csv, landmark_ranking.csv, completeness.csv, pruning.csv, ...
      attributions/  <emotion>.npz, typical.csv, typical_rows.json (R-EMO: r-emo/, *_r-emo.*)
      models/        <variant>/<emotion>/<selection>_K<k>_seed<s>.keras (+ .npz, .json)
      figures/       plotly HTML
      cache/         extraction/, grid/, ig/, explore/: per-item caches that make stages resumable

Stages never build these paths themselves and never import an earlier stage's module to read its
outputs: they ask :class:`RunFolder`. The one rule for variants: T-EMO (the paper's model) owns the
plain names; every other variant's files carry its name as a suffix (``landmark_ranking_r-emo.csv``)
or a folder (``attributions/r-emo/``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from emolib import io
from emolib.config import Params, load_params
from emolib.errors import DataError, ParamsError
from emolib.vocab import (
    N_LANDMARKS,
    PAPER_VARIANT,
    PARTS,
    RANKING_COLUMNS,
    REMOVAL_SELECTIONS,
    RESULT_COLUMNS,
    RESULT_KEY,
    SPLIT_COLUMNS,
)

if TYPE_CHECKING:
    import pandas as pd

    from emolib.landmarks import LandmarkSet
    from emolib.models import TrainedModel


def with_variant(name: str, variant: str) -> str:
    """The file name of ``variant``'s copy of a stage-03 file: ``name`` itself for T-EMO,
    ``<stem>_<variant><suffix>`` for any other (``landmark_ranking.csv`` -> ``landmark_ranking_r-emo.csv``)."""
    if variant == PAPER_VARIANT:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}_{variant}.{suffix}" if dot else f"{name}_{variant}"


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder, and readers of what the stages wrote there.

    Folders are created by :meth:`ensure`; nothing else here writes.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---- the folder -----------------------------------------------------------------------------
    @property
    def params_path(self) -> Path:
        return self.root / "params.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def index_page(self) -> Path:
        """``index.html``: the page to open first (what was run, headline numbers, the reports)."""
        return self.root / "index.html"

    def notebook(self, stage: str) -> Path:
        """The executed notebook of ``stage`` (its HTML report is beside it)."""
        return self.root / f"{stage}.ipynb"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def attributions(self) -> Path:
        return self.root / "attributions"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def cache(self) -> Path:
        """Per-item caches that make long stages resumable (extraction, grid points, IG, explorer)."""
        return self.root / "cache"

    def ensure(self) -> "RunFolder":
        for folder in (self.root, self.data, self.results, self.attributions, self.models,
                       self.figures, self.cache):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def result(self, name: str) -> Path:
        """``results/<name>``: a table written by one stage (stage 05's many tables)."""
        return self.results / name

    def figure(self, name: str) -> Path:
        """``figures/<name>``."""
        return self.figures / name

    # ---- stage 01 -------------------------------------------------------------------------------
    @property
    def landmarks(self) -> Path:
        return self.data / "landmarks.npz"

    @property
    def extraction_report(self) -> Path:
        return self.data / "extraction_report.csv"

    @property
    def ground_truth(self) -> Path:
        """``data/ground_truth.json``: the landmarks each emotion really moves (demo data only)."""
        return self.data / "ground_truth.json"

    @property
    def demo_source(self) -> Path:
        """Where stage 01 writes the demo dataset unless ``data.path`` says otherwise."""
        return self.data / "demo_source"

    @property
    def extraction_cache(self) -> Path:
        return self.cache / "extraction"

    # ---- stage 02 -------------------------------------------------------------------------------
    @property
    def splits(self) -> Path:
        return self.results / "splits.csv"

    @property
    def training_results(self) -> Path:
        return self.results / "training.csv"

    @property
    def svm_results(self) -> Path:
        return self.results / "svm.csv"

    @property
    def hyperparameters(self) -> Path:
        return self.results / "hyperparameters.csv"

    @property
    def grid_search(self) -> Path:
        return self.results / "grid_search.csv"

    @staticmethod
    def history(results_csv: Path) -> Path:
        """The learning curves beside a results table: ``history.csv`` for ``training.csv``,
        ``<name>_history.csv`` otherwise."""
        results_csv = Path(results_csv)
        name = "history.csv" if results_csv.name == "training.csv" else f"{results_csv.stem}_history.csv"
        return results_csv.parent / name

    def model(self, variant: str, emotion: str, n_landmarks: int, selection: str, seed: int) -> Path:
        """``models/<variant>/<emotion>/<selection>_K<n>_seed<seed>.keras`` (its scaler and record
        beside it: :func:`emolib.models.unit_files`)."""
        return self.models / variant / emotion / f"{selection}_K{int(n_landmarks)}_seed{int(seed)}.keras"

    def grid_model(self, emotion: str, n_landmarks: int, selection: str, seed: int,
                   hyper: Sequence[int]) -> Path:
        """A grid-search point's model (T-EMO on the grid seed), in ``cache/grid/``."""
        f, q, r = (int(v) for v in hyper)
        return (self.cache / "grid" / PAPER_VARIANT / emotion /
                f"{selection}_K{int(n_landmarks)}_seed{int(seed)}_F{f}_Q{q}_R{r}.keras")

    # ---- stage 03 -------------------------------------------------------------------------------
    def ranking(self, variant: str = PAPER_VARIANT) -> Path:
        return self.results / with_variant("landmark_ranking.csv", variant)

    def completeness(self, variant: str = PAPER_VARIANT) -> Path:
        return self.results / with_variant("completeness.csv", variant)

    @property
    def completeness_by_steps(self) -> Path:
        return self.results / "completeness_by_steps.csv"

    @property
    def planted_recovery(self) -> Path:
        return self.results / "planted_recovery.csv"

    def typical(self, variant: str = PAPER_VARIANT) -> tuple[Path, Path]:
        """``attributions/typical.csv`` (one row per emotion) and ``attributions/typical_rows.json``
        (the rows each baseline averages)."""
        return (self.attributions / with_variant("typical.csv", variant),
                self.attributions / with_variant("typical_rows.json", variant))

    def attribution(self, emotion: str, variant: str = PAPER_VARIANT) -> Path:
        """One emotion's masks: ``attributions/<emotion>.npz`` for T-EMO, ``attributions/<variant>/
        <emotion>.npz`` for any other variant."""
        if variant == PAPER_VARIANT:
            return self.attributions / f"{emotion}.npz"
        return self.attributions / variant / f"{emotion}.npz"

    @property
    def deletion(self) -> Path:
        """``results/deletion.csv``: areas under the deletion and insertion curves (stage 03)."""
        return self.results / "deletion.csv"

    @property
    def deletion_curves(self) -> Path:
        """``results/deletion_curves.csv``: the mean deletion and insertion curves (stage 03)."""
        return self.results / "deletion_curves.csv"

    @property
    def randomisation(self) -> Path:
        """``results/randomisation.csv``: the model-parameter randomisation check (stage 03)."""
        return self.results / "randomisation.csv"

    @property
    def stability(self) -> Path:
        """``results/stability.csv``: agreement of rankings across seeds, baselines, steps (stage 03)."""
        return self.results / "stability.csv"

    @property
    def frame_attributions(self) -> Path:
        """``attributions/frames.npz``: one sample per emotion, its attribution frame by frame (stage 03)."""
        return self.attributions / "frames.npz"

    @property
    def ig_cache(self) -> Path:
        return self.cache / "ig"

    @property
    def explore_cache(self) -> Path:
        return self.cache / "explore"

    # ---- stage 04 -------------------------------------------------------------------------------
    @property
    def pruning_results(self) -> Path:
        return self.results / "pruning.csv"

    # ================================================================================================
    # Readers
    # ================================================================================================
    def read_landmarks(self) -> "LandmarkSet":
        """``data/landmarks.npz`` (stage 01), validated."""
        from emolib.landmarks import load_landmarks

        return load_landmarks(self.landmarks)

    def read_extraction_report(self) -> "pd.DataFrame":
        """``data/extraction_report.csv`` (stage 01).

        Raises:
            DataError: the report is missing.
        """
        import pandas as pd

        if not self.extraction_report.is_file():
            raise DataError(f"{self.extraction_report}: extraction report not found (run stage 01 first)")
        return pd.read_csv(self.extraction_report, dtype={"sequence": str, "subject": str},
                           keep_default_na=False, na_values={"frames": [""], "frames_without_face": [""]})

    def read_ground_truth(self, emotions: Optional[Sequence[str]] = None) -> Optional[dict[str, np.ndarray]]:
        """The landmarks each emotion really moves, where the data knows them (demo data).

        Args:
            emotions: keep these emotions (default: all in the file).

        Returns:
            emotion -> planted landmark ids, or None when the run has no ground truth (real data).

        Raises:
            DataError: the file exists but is not of the form ``{"landmarks": {emotion: [ids]}}``.
        """
        path = self.ground_truth
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            truth = {str(e): np.asarray(ids, dtype=int) for e, ids in raw["landmarks"].items()}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path}: not a ground-truth file of the form "
                            f"{{\"landmarks\": {{emotion: [ids]}}}} ({exc})") from None
        if emotions is not None:
            truth = {e: v for e, v in truth.items() if e in emotions}
        return truth

    def read_splits(self) -> "pd.DataFrame":
        """``results/splits.csv`` (stage 02): every seed's partition.

        Raises:
            DataError: the file is missing, unreadable or lacks a column.
        """
        import pandas as pd

        path = self.splits
        if not path.is_file():
            raise DataError(f"{path}: not found; run stage 02 (emolib.training.train_models) first")
        try:
            splits = pd.read_csv(path, dtype={"sequence": str, "subject": str, "emotion": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV ({exc})") from None
        missing = [c for c in SPLIT_COLUMNS if c not in splits.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}")
        return splits

    @staticmethod
    def split_parts(splits: "pd.DataFrame", seed: int) -> dict[str, np.ndarray]:
        """The sample rows of each part of one seed's partition.

        Args:
            splits: the splits table (:meth:`read_splits`, or a table as stage 02 makes it).
            seed: the seed.

        Returns:
            part (``train``, ``val``, ``test``) -> sorted int array of landmark-file rows.

        Raises:
            DataError: the table holds no partition for ``seed``.
        """
        rows = splits[splits["seed"] == int(seed)]
        if rows.empty:
            raise DataError(f"the splits hold no partition for seed {seed} "
                            f"(seeds present: {sorted(set(splits['seed'].tolist()))})")
        return {p: np.sort(rows.loc[rows["part"] == p, "sample"].to_numpy(dtype=int)) for p in PARTS}

    def read_table(self, path: Path, required: Sequence[str], *, allow_empty: bool = False) -> "pd.DataFrame":
        """A results table, its columns checked.

        Raises:
            DataError: the file is missing, unreadable, lacks a column, or holds no rows.
        """
        import pandas as pd

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: not found (the stage that writes it has not run)")
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV ({exc})") from None
        missing = [c for c in required if c not in table.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}")
        if table.empty and not allow_empty:
            raise DataError(f"{path}: holds no rows")
        return table

    def read_results(self, path: Optional[Path] = None, params: Optional[Params] = None, *,
                     n_landmarks: Optional[Sequence[int]] = None,
                     selections: Optional[Sequence[str]] = None) -> "pd.DataFrame":
        """A table of trained models (``results/training.csv`` by default, or ``pruning.csv``), one
        row per model: the latest row of each key, restricted to ``params``' emotions and seeds and
        to the K and selections asked for.

        A results table is appended to as models finish; rows from an earlier parameter set (other
        seeds, other K) or a model trained twice must not count twice in a mean.

        Raises:
            DataError: the table is missing, unreadable, empty or lacks a column.
        """
        table = self.read_table(path if path is not None else self.training_results, RESULT_COLUMNS)
        return current_rows(table, params, n_landmarks=n_landmarks, selections=selections)

    def read_pruning(self, params: Params, n_available: int = N_LANDMARKS, *,
                     selections: Optional[Sequence[str]] = None) -> "pd.DataFrame":
        """Stage 04's models for these parameters: the rules that keep K landmarks at each K of
        ``pruning.k``, and ROAR's rules (which remove K) at L - K for each K of ``pruning.roar.k``.

        Args:
            params: the run's parameters.
            n_available: L, the landmarks in the data (ROAR's rows count the L - K kept).
            selections: keep only these rules (default: all in the file).

        Raises:
            DataError: results/pruning.csv is missing, unreadable, empty or lacks a column.
        """
        import pandas as pd

        table = self.read_table(self.pruning_results, RESULT_COLUMNS)
        removal = table["selection"].isin(REMOVAL_SELECTIONS)
        kept = current_rows(table[~removal], params, n_landmarks=params.pruning.k, selections=selections)
        roar = current_rows(table[removal], params, n_landmarks=[int(n_available) - k for k in params.pruning.roar.k],
                            selections=selections)
        return pd.concat([kept, roar], ignore_index=True)

    def read_history(self, results_csv: Optional[Path] = None) -> "pd.DataFrame":
        """The learning curves beside ``results_csv`` (default: ``results/history.csv``)."""
        import pandas as pd

        path = self.history(results_csv if results_csv is not None else self.training_results)
        if not path.is_file():
            raise DataError(f"{path}: not found (stage 02 has not run)")
        return pd.read_csv(path)

    def read_ranking_table(self, variant: str = PAPER_VARIANT) -> "pd.DataFrame":
        """``results/landmark_ranking.csv`` (stage 03) as a table.

        Raises:
            DataError: the ranking is missing or malformed (run stage 03).
        """
        path = self.ranking(variant)
        if not path.is_file():
            raise DataError(f"{path}: no landmark ranking; run stage 03 (03_global_ig) first")
        return self.read_table(path, RANKING_COLUMNS)

    def read_ranking(self, variant: str = PAPER_VARIANT) -> dict[str, np.ndarray]:
        """Stage 03's ranking: emotion -> landmark ids, most important first.

        Raises:
            DataError: ``results/landmark_ranking.csv`` is missing or malformed (run stage 03).
        """
        path = self.ranking(variant)
        if not path.is_file():
            raise DataError(f"{path}: no landmark ranking; run stage 03 (03_global_ig) first")
        table = self.read_table(path, ("emotion", "rank", "landmark"))
        return {str(e): rows.sort_values("rank")["landmark"].to_numpy(dtype=int)
                for e, rows in table.groupby("emotion", sort=False)}

    def read_masks(self, emotion: str, variant: str = PAPER_VARIANT) -> dict[str, np.ndarray]:
        """One emotion's attribution masks (the npz stage 03 writes).

        Returns:
            name -> array: per_baseline, baseline_emotions, global, landmark_ids, n_samples,
            samples, gaps, deltas, steps, rule, cache_key.

        Raises:
            DataError: the file is missing or unreadable.
        """
        path = self.attribution(emotion, variant)
        if not path.is_file():
            raise DataError(f"{path}: no attributions for {emotion}; run stage 03 (03_global_ig) first")
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except Exception as exc:  # truncated, not an npz
            raise DataError(f"{path}: not a readable attribution file ({exc}); run stage 03 again") from None

    def read_checks(self) -> dict[str, "pd.DataFrame"]:
        """Stage 03's checks that are there: name (``deletion``, ``deletion_curves``,
        ``randomisation``, ``stability``) -> table; a check not run is absent.

        Raises:
            DataError: a table exists but is unreadable or lacks a column.
        """
        from emolib.vocab import DELETION_COLUMNS, DELETION_CURVE_COLUMNS, RANDOMISATION_COLUMNS, STABILITY_COLUMNS

        wanted = {"deletion": (self.deletion, DELETION_COLUMNS),
                  "deletion_curves": (self.deletion_curves, DELETION_CURVE_COLUMNS),
                  "randomisation": (self.randomisation, RANDOMISATION_COLUMNS),
                  "stability": (self.stability, STABILITY_COLUMNS)}
        return {name: self.read_table(path, cols, allow_empty=True)
                for name, (path, cols) in wanted.items() if path.is_file()}

    def read_frame_attributions(self) -> Optional[dict[str, dict[str, np.ndarray]]]:
        """``attributions/frames.npz``: emotion -> {sample, X (P, 2, L) landmarks, attribution
        (P, L), landmark_ids (L,)}; None when stage 03 did not write it.

        Raises:
            DataError: the file is unreadable.
        """
        path = self.frame_attributions
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                flat = {k: f[k] for k in f.files}
        except Exception as exc:  # truncated, not an npz
            raise DataError(f"{path}: not a readable attribution file ({exc}); run stage 03 again") from None
        out: dict[str, dict[str, np.ndarray]] = {}
        for key, value in flat.items():
            emotion, _, name = key.partition("__")
            out.setdefault(emotion, {})[name] = value
        return out

    def load_trained(self, variant: str, emotion: str, n_landmarks: int, selection: str,
                     seed: int) -> "TrainedModel":
        """A model stage 02 or 04 trained, with its input scaling and landmark ids.

        Raises:
            DataError: the model, its scaler or its record is missing or unreadable.
        """
        from emolib.models import load_unit

        return load_unit(self.model(variant, emotion, n_landmarks, selection, seed), variant=variant,
                         emotion=emotion, n_landmarks=n_landmarks, selection=selection, seed=seed)


def current_rows(table: "pd.DataFrame", params: Optional[Params] = None, *,
                 n_landmarks: Optional[Sequence[int]] = None,
                 selections: Optional[Sequence[str]] = None) -> "pd.DataFrame":
    """Rows of a results table that belong to these parameters, one per model (the latest).

    Args:
        table: a results table with the :data:`~emolib.vocab.RESULT_KEY` columns.
        params: keep the rows of its emotions and seeds (default: every row).
        n_landmarks: keep only these K (default: all).
        selections: keep only these rules (default: all).

    Returns:
        The filtered table, index reset.
    """
    keep = np.ones(len(table), dtype=bool)
    if params is not None:
        keep &= table["emotion"].isin(params.emotions) & table["seed"].isin(params.seeds)
    if n_landmarks is not None:
        keep &= table["n_landmarks"].isin(list(n_landmarks))
    if selections is not None:
        keep &= table["selection"].isin(list(selections))
    return table[keep].drop_duplicates(subset=list(RESULT_KEY), keep="last").reset_index(drop=True)


def open_run(run_dir: str | Path, params_file: str | Path | None = None) -> tuple[RunFolder, Params]:
    """Open (or start) a run folder and return it with its validated parameters.

    A run folder written by ``emolib run`` holds the resolved ``params.yaml``, which wins. A
    notebook opened by hand on a new folder passes ``params_file``; its resolved form is then
    written into the folder so that later stages read the same values.

    Raises:
        ParamsError: neither the folder's params.yaml nor ``params_file`` exists or validates.
    """
    run = RunFolder(Path(run_dir))
    if run.params_path.is_file():
        params = load_params(run.params_path)
    elif params_file:
        params = load_params(params_file)
        run.ensure()
        io.write_text(run.params_path, params.to_yaml())
    else:
        raise ParamsError(f"{run.params_path}: no params.yaml in the run folder and no params_file given")
    run.ensure()
    return run, params
