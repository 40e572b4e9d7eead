"""Stage 04: retrain T-EMO and R-EMO on each emotion's top-K landmarks, against random subsets;
and ROAR: retrain on every landmark but the top K, against every landmark but K random ones.

For every K in ``params.pruning.k`` and every selection rule (``ig``: the emotion's top-K landmarks
from stage 03's ranking, read through the run folder; ``random``: a seeded random subset of the
same size, the control), the training engine (:func:`emolib.training.train_models`) trains every
(variant, emotion, seed) and appends its rows to ``results/pruning.csv``. Training resumes
finished models, so an interrupted stage picks up where it stopped.

ROAR (Hooker et al. 2019, ``pruning.roar``): rules ``roar`` (every landmark but the emotion's top
K) and ``roar_random`` (every landmark but K random ones, the control), trained for
``pruning.roar.variants`` only; their rows count the landmarks kept (L - K) in ``n_landmarks``. A
faithful ranking loses more accuracy when its top K are removed than when K random ones are.

Selection rules live in a small registry (:data:`SELECTION_RULES`); the rule's name is the
``selection`` column of the results, so a further ranking (another attribution method, a
region-based choice) is one :func:`register_selection` away.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from emolib.config import Params
from emolib.errors import DataError, ParamsError
from emolib.landmarks import LandmarkSet
from emolib.run_folder import RunFolder
from emolib.training.stage import train_models
from emolib.training.units import LandmarkChoice
from emolib.vocab import ALL_LANDMARKS, N_LANDMARKS, RESULT_KEY, VARIANTS

Ranking = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class SelectionRule:
    """A way of choosing K landmarks for an emotion.

    Attributes:
        name: the value written in the ``selection`` column of the results.
        description: one line for reports.
        per_seed: True when the subset changes with the seed (a random control), False when one
            subset per (emotion, K) serves every seed (a ranking).
        needs_ranking: True when the rule reads stage 03's ranking.
        choose: ``(emotion, k, seed, ranking, available_ids) -> ids`` (``ranking`` may be None
            for a rule that does not need it).
        removes: True when ``k`` counts the landmarks removed (ROAR: the rule keeps L - k),
            False when it counts those kept.
    """

    name: str
    description: str
    per_seed: bool
    needs_ranking: bool
    choose: Callable[[str, int, int, Optional[Ranking], np.ndarray], np.ndarray]
    removes: bool = False

    def kept(self, k: int, n_available: int) -> int:
        """How many landmarks the rule keeps for ``k`` out of ``n_available``."""
        return int(n_available) - int(k) if self.removes else int(k)


SELECTION_RULES: dict[str, SelectionRule] = {}


def register_selection(name: str, description: str, *, per_seed: bool, needs_ranking: bool,
                       removes: bool = False):
    """Decorator adding a selection rule to :data:`SELECTION_RULES` under ``name``.

    Args:
        name: the rule's name (the ``selection`` column); must not be ``all``, which names the
            full landmark set of stage 02.
        description: one line saying what the rule keeps.
        per_seed: whether the subset depends on the seed.
        needs_ranking: whether the rule reads stage 03's ranking.
        removes: whether ``k`` counts the landmarks the rule removes (ROAR) rather than keeps.

    Returns:
        The decorator; it returns the function unchanged.

    Raises:
        ValueError: ``name`` is ``all`` or already registered (a programming error).
    """
    if name == ALL_LANDMARKS or name in SELECTION_RULES:
        raise ValueError(f"selection rule {name!r} is reserved or already registered")

    def decorate(func):
        SELECTION_RULES[name] = SelectionRule(name, description, per_seed, needs_ranking, func, removes)
        return func

    return decorate


@register_selection("ig", "the emotion's K most important landmarks by global Integrated Gradients "
                    "(stage 03)", per_seed=False, needs_ranking=True)
def top_k_landmarks(emotion: str, k: int, seed: int, ranking: Optional[Ranking],
                    available_ids: np.ndarray) -> np.ndarray:
    """The first ``k`` landmarks of ``emotion``'s ranking that the data holds.

    Args:
        emotion: the emotion whose ranking is used.
        k: how many landmarks to keep.
        seed: unused (one subset serves every seed).
        ranking: emotion -> landmark ids, most important first.
        available_ids: the landmark ids present in the data.

    Returns:
        ``k`` landmark ids, sorted by id (see :func:`select_landmarks`).

    Raises:
        DataError: no ranking, or the ranking of ``emotion`` is missing or too short.
    """
    if ranking is None or emotion not in ranking:
        raise DataError(f"no landmark ranking for {emotion!r} (stage 03 writes results/landmark_ranking.csv)")
    available = set(int(i) for i in available_ids)
    ranked = [int(i) for i in ranking[emotion] if int(i) in available]
    if len(ranked) < k:
        raise DataError(f"the ranking of {emotion!r} holds {len(ranked)} landmarks present in the data; "
                          f"K={k} needs {k}")
    return np.asarray(ranked[:k], dtype=int)


@register_selection("random", "K landmarks drawn at random, a different seeded subset per "
                    "(emotion, K, seed): the chance level the ranking must beat",
                    per_seed=True, needs_ranking=False)
def random_landmarks(emotion: str, k: int, seed: int, ranking: Optional[Ranking],
                     available_ids: np.ndarray) -> np.ndarray:
    """A random subset of ``k`` landmarks, the same on every machine for (emotion, k, seed).

    Args:
        emotion: mixed into the random stream, so that emotions get different subsets.
        k: how many landmarks to keep.
        seed: the training seed; mixed into the random stream.
        ranking: unused.
        available_ids: the landmark ids to draw from.

    Returns:
        ``k`` distinct landmark ids.

    Raises:
        ParamsError: ``k`` exceeds the number of available landmarks.
    """
    available_ids = np.asarray(available_ids, dtype=int)
    if k > available_ids.size:
        raise ParamsError(f"cannot draw {k} random landmarks from {available_ids.size}")
    # crc32, not hash(): Python salts str hashes per process, and the subset must not change
    # between the run that trains a model and the run that resumes or reports it.
    stream = np.random.default_rng([0xE40, int(seed), int(k), zlib.crc32(emotion.encode())])
    return stream.choice(np.sort(available_ids), size=k, replace=False)


@register_selection("roar", "every landmark but the emotion's K most important by global IG (ROAR: "
                    "remove and retrain)", per_seed=False, needs_ranking=True, removes=True)
def all_but_top_k(emotion: str, k: int, seed: int, ranking: Optional[Ranking],
                  available_ids: np.ndarray) -> np.ndarray:
    """Every available landmark except the first ``k`` of ``emotion``'s ranking.

    Raises:
        DataError: as :func:`top_k_landmarks`.
    """
    removed = top_k_landmarks(emotion, k, seed, ranking, available_ids)
    return np.setdiff1d(np.asarray(available_ids, dtype=int), removed)


@register_selection("roar_random", "every landmark but K drawn at random per (emotion, K, seed): ROAR's "
                    "control", per_seed=True, needs_ranking=False, removes=True)
def all_but_random_k(emotion: str, k: int, seed: int, ranking: Optional[Ranking],
                     available_ids: np.ndarray) -> np.ndarray:
    """Every available landmark except ``k`` random ones (the subset :func:`random_landmarks`
    draws for the same emotion, K and seed).

    Raises:
        ParamsError: as :func:`random_landmarks`.
    """
    removed = random_landmarks(emotion, k, seed, ranking, available_ids)
    return np.setdiff1d(np.asarray(available_ids, dtype=int), removed)


def select_landmarks(rule: str, emotion: str, k: int, seed: int, *, ranking: Optional[Ranking] = None,
                     available_ids: Sequence[int]) -> np.ndarray:
    """Apply the selection rule ``rule``.

    The ids come back sorted by MediaPipe id, whichever rule chose them: the convolution slides
    over the landmark axis, so every model sees its landmarks in the same relative order as the
    468-landmark model did, and rules differ only in which landmarks they keep.

    Args:
        rule: a name in :data:`SELECTION_RULES`.
        emotion: the emotion the model recognises.
        k: how many landmarks to keep.
        seed: the training seed.
        ranking: emotion -> ids most important first (for rules that need it).
        available_ids: the landmark ids the data holds.

    Returns:
        ``k`` distinct landmark ids, ascending (a removing rule: all available but ``k``).

    Raises:
        ParamsError: ``rule`` is not registered.
        DataError, ParamsError: the rule cannot produce ``k`` landmarks from these data.
        ValueError: the rule returned another number of distinct landmarks (a bug in the rule).
    """
    if rule not in SELECTION_RULES:
        raise ParamsError(f"unknown landmark selection rule {rule!r}; known: {sorted(SELECTION_RULES)}")
    available = np.asarray(available_ids, dtype=int)
    ids = SELECTION_RULES[rule].choose(emotion, int(k), int(seed), ranking, available)
    ids = np.sort(np.asarray(ids, dtype=int))
    expected = SELECTION_RULES[rule].kept(k, available.size)
    if ids.size != expected or np.unique(ids).size != expected:
        raise ValueError(f"selection rule {rule!r} returned {np.unique(ids).size} distinct landmarks "
                          f"for {emotion!r}, expected {expected}")
    return ids


def landmark_choice(rule: str, k: int, emotions: Sequence[str], *, ranking: Optional[Ranking] = None,
                    available_ids: Sequence[int]) -> LandmarkChoice:
    """The ``landmark_ids`` argument of ``train_models`` for one rule and one K.

    Args:
        rule: a name in :data:`SELECTION_RULES`.
        k: how many landmarks each model keeps.
        emotions: the emotions trained.
        ranking: emotion -> ids most important first (for rules that need it).
        available_ids: the landmark ids the data holds.

    Returns:
        A dict emotion -> ids for a rule whose subset serves every seed; a function
        ``(emotion, seed) -> ids`` for a per-seed rule.
    """
    available = np.asarray(available_ids, dtype=int)
    if SELECTION_RULES[rule].per_seed:
        def choose(emotion: str, seed: int) -> np.ndarray:
            return select_landmarks(rule, emotion, k, seed, ranking=ranking, available_ids=available)
        return choose
    return {e: select_landmarks(rule, e, k, 0, ranking=ranking, available_ids=available) for e in emotions}


def pruning_selections(params: Params) -> list[str]:
    """The selection rules stage 04 trains: ``ig``, plus ``random`` when the control is on.

    Args:
        params: the run's parameters.

    Returns:
        Rule names, in training order.
    """
    return ["ig"] + (["random"] if params.pruning.random_control else [])


def roar_selections(params: Params) -> list[str]:
    """ROAR's rules: ``roar``, plus ``roar_random`` when the control is on; none when
    ``pruning.roar.k`` is empty.

    Args:
        params: the run's parameters.

    Returns:
        Rule names, in training order.
    """
    if not params.pruning.roar.k:
        return []
    return ["roar"] + (["roar_random"] if params.pruning.random_control else [])


def _plan(params: Params, selections: Sequence[str]) -> list[tuple[int, str, tuple[str, ...]]]:
    """(K, rule, variants) for every training call of stage 04: the keeping rules at each K of
    ``pruning.k`` for both variants, the removing rules at each K of ``pruning.roar.k`` for
    ``pruning.roar.variants``."""
    keep = [s for s in selections if not SELECTION_RULES[s].removes]
    remove = [s for s in selections if SELECTION_RULES[s].removes]
    return ([(k, rule, VARIANTS) for k in params.pruning.k for rule in keep]
            + [(k, rule, tuple(params.pruning.roar.variants)) for k in params.pruning.roar.k for rule in remove])


def pruning_plan(params: Params, selections: Optional[Sequence[str]] = None,
                 n_available: int = N_LANDMARKS) -> pd.DataFrame:
    """What stage 04 will train, one row per (K, selection rule).

    Args:
        params: the run's parameters.
        selections: the rules (default :func:`pruning_selections` and :func:`roar_selections`).
        n_available: the landmarks in the data (a removing rule keeps n_available - K).

    Returns:
        Columns n_landmarks (kept), removed (K for a removing rule, else 0), selection,
        description, variants, models (variants x emotions x seeds), grid_search.
    """
    selections = list(selections or pruning_selections(params) + roar_selections(params))
    rows = []
    for k, rule, variants in _plan(params, selections):
        r = SELECTION_RULES[rule]
        rows.append({"n_landmarks": r.kept(k, n_available), "removed": k if r.removes else 0, "selection": rule,
                     "description": r.description, "variants": ", ".join(variants),
                     "models": len(variants) * len(params.emotions) * len(params.seeds),
                     "grid_search": params.pruning.grid_search})
    return pd.DataFrame(rows)


def subset_regions(params: Params, ranking: Optional[Ranking], available_ids: Sequence[int], *,
                   seed: Optional[int] = None, selections: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Where each rule's subsets lie on the face: landmarks per region, per emotion, K and rule.

    Args:
        params: the run's parameters (emotions, ``pruning.k``).
        ranking: emotion -> ids most important first.
        available_ids: the landmark ids the data holds.
        seed: the seed for per-seed rules (default: the first seed).
        selections: the rules (default :func:`pruning_selections`).

    Returns:
        One row per (emotion, n_landmarks, selection): a column per region with its count, and
        ``overlap_with_ig`` (how many landmarks the subset shares with the IG subset).
    """
    from emolib.regions import REGIONS, region_of

    selections = list(selections or pruning_selections(params))
    seed = params.seeds[0] if seed is None else seed
    rows = []
    for emotion in params.emotions:
        for k in params.pruning.k:
            ig = (set(select_landmarks("ig", emotion, k, seed, ranking=ranking, available_ids=available_ids).tolist())
                  if ranking is not None else set())
            for rule in selections:
                ids = select_landmarks(rule, emotion, k, seed, ranking=ranking, available_ids=available_ids)
                regions = region_of(ids)
                row = {"emotion": emotion, "n_landmarks": k, "selection": rule}
                row.update({r: int((regions == r).sum()) for r in REGIONS})
                row["overlap_with_ig"] = len(ig & set(ids.tolist())) if ig else np.nan
                rows.append(row)
    return pd.DataFrame(rows)


def check_pruning_inputs(params: Params, data: LandmarkSet, ranking: Optional[Ranking],
                         selections: Sequence[str], source: str = "results/landmark_ranking.csv") -> None:
    """Refuse impossible pruning settings before any model is trained.

    Args:
        params: the run's parameters (``pruning.k``, ``emotions``).
        data: the landmark set the models train on.
        ranking: emotion -> ids most important first (may be None when no rule needs it).
        selections: the rules to be trained.
        source: where the ranking came from, for messages.

    Raises:
        ParamsError: a K is not below the number of landmarks in the data, or a rule is unknown.
        DataError: the ranking lacks an emotion, repeats a landmark, or names landmarks the data
            does not hold so that a K cannot be filled.
    """
    n_available = data.n_landmarks
    too_big = [k for k in params.pruning.k if k >= n_available]
    if too_big:
        raise ParamsError(f"pruning.k: K={too_big} is not below the {n_available} landmarks in the data "
                          f"(the full set is stage 02's run); use K < {n_available}")
    unknown = [s for s in selections if s not in SELECTION_RULES]
    if unknown:
        raise ParamsError(f"unknown landmark selection rule(s) {unknown}; known: {sorted(SELECTION_RULES)}")
    removing = [s for s in selections if SELECTION_RULES[s].removes]
    too_big = [k for k in params.pruning.roar.k if k >= n_available] if removing else []
    if too_big:
        raise ParamsError(f"pruning.roar.k: removing K={too_big} would leave no landmark of the {n_available} "
                          f"in the data; use K < {n_available}")
    if not any(SELECTION_RULES[s].needs_ranking for s in selections):
        return
    if ranking is None:
        raise DataError(f"{source}: no landmark ranking (stage 03 must run before stage 04)")
    available = set(int(i) for i in data.landmark_ids)
    needs = [(k, "pruning.roar.k" if SELECTION_RULES[rule].removes else "pruning.k")
             for k, rule, _ in _plan(params, selections) if SELECTION_RULES[rule].needs_ranking]
    k_max, key = max(needs, default=(0, "pruning.k"))
    for emotion in params.emotions:
        if emotion not in ranking:
            raise DataError(f"{source}: no ranking for emotion {emotion!r} (has {sorted(ranking)})")
        ids = [int(i) for i in ranking[emotion]]
        if len(set(ids)) != len(ids):
            raise DataError(f"{source}: the ranking of {emotion!r} repeats landmarks")
        usable = sum(1 for i in ids if i in available)
        if usable < k_max:
            raise DataError(f"{source}: the ranking of {emotion!r} holds {usable} landmarks present in the "
                            f"data; {key} needs {k_max}")


def run_pruning(run: RunFolder, params: Params, data: LandmarkSet, *, ranking: Optional[Ranking] = None,
                selections: Optional[Sequence[str]] = None, progress: bool = True) -> pd.DataFrame:
    """Train every (variant, emotion, seed) on each K and selection rule; return the results.

    Models already trained (same parameters) are not trained again: ``train_models`` resumes.

    Args:
        run: the run folder (reads results/landmark_ranking.csv when ``ranking`` is None).
        params: the run's parameters (``pruning.k``, ``pruning.random_control``,
            ``pruning.grid_search``, seeds, model, train).
        data: the full landmark set (all landmarks); each model keeps its subset.
        ranking: emotion -> ids most important first; default: stage 03's ranking.
        selections: rules to train; default :func:`pruning_selections` and :func:`roar_selections`
            (a removing rule is trained at each K of ``pruning.roar.k``, for its variants).
        progress: show progress bars.

    Returns:
        The rows of results/pruning.csv for these parameters (see :func:`load_pruning`).

    Raises:
        ParamsError, DataError: bad settings or ranking (checked before any training).
    """
    from tqdm.auto import tqdm

    selections = list(selections or pruning_selections(params) + roar_selections(params))
    if ranking is None and any(SELECTION_RULES.get(s) and SELECTION_RULES[s].needs_ranking for s in selections):
        ranking = run.read_ranking()
    check_pruning_inputs(params, data, ranking, selections)
    for k, rule, variants in tqdm(_plan(params, selections), desc="pruning (K, selection)", disable=not progress):
        choice = landmark_choice(rule, k, params.emotions, ranking=ranking, available_ids=data.landmark_ids)
        # The control gets the same treatment as the ranking (grid search included), so that
        # the two differ only in which landmarks they keep.
        train_models(run, params, data, selection=rule, landmark_ids=choice, variants=variants,
                     grid_search=params.pruning.grid_search, results_csv=run.pruning_results,
                     progress=progress)
    return load_pruning(run, params, selections=selections, n_available=data.n_landmarks)


def load_pruning(run: RunFolder, params: Params, *, selections: Optional[Sequence[str]] = None,
                 n_available: int = N_LANDMARKS) -> pd.DataFrame:
    """The rows of results/pruning.csv for these parameters (K in ``pruning.k``; ROAR's at L - K
    for K in ``pruning.roar.k``; their seeds): :meth:`RunFolder.read_pruning`.

    Args:
        run: the run folder.
        params: the run's parameters.
        selections: keep only these rules (default: all rules in the file).
        n_available: the landmarks in the data.

    Returns:
        One row per (variant, emotion, n_landmarks, selection, seed).

    Raises:
        DataError: results/pruning.csv is missing or malformed.
    """
    return run.read_pruning(params, n_available, selections=selections)


def load_runs(run: RunFolder, params: Params) -> pd.DataFrame:
    """Stage 02's all-landmark rows (selection ``all``) and stage 04's rows, one per model.

    Args:
        run: the run folder.
        params: the run's parameters.

    Returns:
        The two tables stacked (the columns of :data:`~emolib.vocab.RESULT_COLUMNS`).

    Raises:
        DataError: results/training.csv or results/pruning.csv is missing or malformed.
    """
    # Stage 02 trains on every landmark; whatever it calls that, here it is the "all" selection.
    training = run.read_results(run.training_results, params).assign(selection=ALL_LANDMARKS)
    full = int(training["n_landmarks"].max()) if len(training) else N_LANDMARKS
    return pd.concat([training, load_pruning(run, params, n_available=full)], ignore_index=True)


def ig_minus_random(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy of IG-selected against random subsets, side by side, per variant, emotion, K.

    Args:
        summary: from :func:`emolib.results.tables.accuracy_summary`.

    Returns:
        Columns variant, emotion, n_landmarks, all (the all-landmark mean), ig, random,
        ig_minus_random; empty when the random control did not run.
    """
    means = summary.pivot_table(index=["variant", "emotion"], columns=["selection", "n_landmarks"],
                                values="mean")
    rows = []
    for (variant, emotion), row in means.iterrows():
        full = row["all"].dropna() if "all" in row.index.get_level_values(0) else pd.Series(dtype=float)
        for k in sorted({k for s, k in row.index if s == "ig"}, reverse=True):
            if ("random", k) not in row.index:
                continue
            ig, rnd = row[("ig", k)], row[("random", k)]
            rows.append({"variant": variant, "emotion": emotion, "n_landmarks": k,
                         "all": float(full.iloc[0]) if len(full) else np.nan, "ig": ig, "random": rnd,
                         "ig_minus_random": ig - rnd})
    return pd.DataFrame(rows, columns=["variant", "emotion", "n_landmarks", "all", "ig", "random", "ig_minus_random"])


def check_pruning_results(table: pd.DataFrame, params: Params,
                          selections: Optional[Sequence[str]] = None, n_available: Optional[int] = None) -> None:
    """Check stage 04's results: every planned model present, metrics finite and in range.

    Args:
        table: rows from :func:`load_pruning`.
        params: the run's parameters.
        selections: the rules that were trained (default :func:`pruning_selections` and
            :func:`roar_selections`).
        n_available: the landmarks in the data (default 468).

    Raises:
        DataError: a model is missing, a metric is NaN, or an accuracy lies outside [0, 1].
    """
    selections = list(selections or pruning_selections(params) + roar_selections(params))
    n_available = n_available if n_available is not None else N_LANDMARKS
    expected = {(v, e, SELECTION_RULES[s].kept(k, n_available), s, seed)
                for k, s, variants in _plan(params, selections) for v in variants
                for e in params.emotions for seed in params.seeds}
    have = set(map(tuple, table[list(RESULT_KEY)].itertuples(index=False, name=None)))
    missing = sorted(expected - have)
    if missing:
        raise DataError(f"results/pruning.csv lacks {len(missing)} model(s), first: "
                          f"{dict(zip(RESULT_KEY, missing[0]))}")
    metrics = table[["accuracy", "balanced_accuracy", "f1", "majority_accuracy"]]
    if metrics.isna().any().any():
        raise DataError("results/pruning.csv: a metric is NaN")
    if ((metrics < 0) | (metrics > 1)).any().any():
        raise DataError("results/pruning.csv: a metric lies outside [0, 1]")
