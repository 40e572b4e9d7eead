"""The models, samples, typical baselines and per-sample IG masks of any seed of a run, loaded and
computed once: what stage 03's checks (:mod:`emolib.explain.faithfulness`,
:mod:`emolib.explain.stability`) share, so that a ranking two checks need is computed once.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd

from emolib import io
from emolib.explain.attribute import attribute
from emolib.explain.global_importance import choose_typical_baselines, seed_samples, select_explained
from emolib.explain.typical import TypicalBaseline
from emolib.ig import landmark_mask
from emolib.vocab import ALL_LANDMARKS, PAPER_VARIANT

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.landmarks import LandmarkSet
    from emolib.models import TrainedModel
    from emolib.run_folder import RunFolder


def cached_tables(run: RunFolder, name: str, key: str, names: tuple[str, ...],
                  compute: Callable[[], tuple[pd.DataFrame, ...]]) -> tuple[pd.DataFrame, ...]:
    """The tables of one study from ``cache/ig/<name>_<key>_<part>.csv``, or computed and cached.

    Args:
        run: the run folder.
        name: the study's name.
        key: everything that shapes its tables (:func:`~emolib.explain.attribute.ig_cache_key`).
        names: one part name per table.
        compute: makes the tables (called only when the cache misses).
    """
    paths = [run.ig_cache / f"{name}_{key}_{part}.csv" for part in names]
    if all(p.is_file() for p in paths):
        try:
            return tuple(pd.read_csv(p) for p in paths)
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            pass  # unreadable: recompute and rewrite
    tables = compute()
    for p, t in zip(paths, tables):
        io.write_csv(p, t)
    return tables


def stream_seed(*parts: Any) -> list[int]:
    """A NumPy seed sequence from ints and strings (crc32 for strings: Python salts ``hash`` per
    process, and a check must draw the same on every run)."""
    return [int(p) if isinstance(p, (int, np.integer)) else zlib.crc32(str(p).encode()) for p in parts]


@dataclass
class Explainer:
    """One run's all-landmark models of every seed (``variant``), and IG masks of them, cached.

    Attributes:
        run: the run folder.
        params: the run's parameters.
        data: the landmark set.
        variant: the explained variant (T-EMO, as the paper).
        computed: how many IG calls were made (tests and timing read it).
    """

    run: RunFolder
    params: Params
    data: LandmarkSet
    variant: str = PAPER_VARIANT
    computed: int = 0
    _models: dict = field(default_factory=dict, repr=False)
    _parts: dict = field(default_factory=dict, repr=False)
    _baselines: dict = field(default_factory=dict, repr=False)
    _masks: dict = field(default_factory=dict, repr=False)

    def models(self, seed: int) -> dict[str, TrainedModel]:
        """Emotion -> the seed's all-landmark model (loaded once).

        Raises:
            DataError: a model is missing.
        """
        seed = int(seed)
        if seed not in self._models:
            self._models[seed] = {e: self.run.load_trained(self.variant, e, self.data.n_landmarks, ALL_LANDMARKS, seed)
                                  for e in self.params.emotions}
        return self._models[seed]

    def rows(self, seed: int, part: str) -> dict[str, np.ndarray]:
        """Emotion -> its rows of one part (``train`` or ``test``) of the seed's partition."""
        key = (int(seed), part)
        if key not in self._parts:
            self._parts[key] = seed_samples(self.run, self.params, self.data, part, int(seed))[0]
        return self._parts[key]

    def samples(self, seed: int, emotion: str, part: str, cap: int | None) -> np.ndarray:
        """The explained samples: the emotion's positives of one part, a seeded choice of at most
        ``cap`` (the choice of :func:`~emolib.explain.global_importance.select_explained`)."""
        return select_explained(self.rows(seed, part)[emotion], cap, int(seed), emotion)

    def baselines(self, seed: int, strategy: str | None = None) -> dict[str, TypicalBaseline]:
        """Emotion -> its typical baseline among the seed's training samples (``strategy``:
        default the run's ``ig.typical``)."""
        strategy = strategy or self.params.ig.typical
        key = (int(seed), strategy)
        if key not in self._baselines:
            self._baselines[key] = choose_typical_baselines(self.params, self.data, self.models(seed),
                                                     self.rows(seed, "train"), strategy)
        return self._baselines[key]

    def other_baselines(self, seed: int, emotion: str, strategy: str | None = None) -> list[TypicalBaseline]:
        """The typical baselines of every emotion but ``emotion``, in the run's emotion order."""
        baselines = self.baselines(seed, strategy)
        return [baselines[b] for b in self.params.emotions if b != emotion]

    def per_sample_masks(self, seed: int, emotion: str, samples: Sequence[int], *, strategy: str | None = None,
                         steps: int | None = None, model: Any = None, tag: str = "trained") -> np.ndarray:
        """IG masks of ``samples`` under the seed's model of ``emotion``, one per sample: the sum of
        |IG| over frames and coordinates, averaged over the other emotions' typical baselines
        (their mean over samples is the paper's global mask).

        Args:
            seed: the models' seed.
            emotion: the explained emotion.
            samples: rows of the landmark set.
            strategy: the typical-baseline strategy (default ``ig.typical``).
            steps: IG steps (default ``ig.steps``).
            model: a tf-keras model to explain in place of the trained one (the same inputs and
                scaling: a randomised copy); ``tag`` names it in the cache.
            tag: what ``model`` is (``trained`` when None).

        Returns:
            (n, L) masks, in the order of the model's landmark ids.
        """
        strategy = strategy or self.params.ig.typical
        steps = int(steps or self.params.ig.steps)
        samples = np.asarray(samples, dtype=int)
        key = (int(seed), emotion, strategy, steps, tag, tuple(samples.tolist()))
        if key not in self._masks:
            trained = self.models(seed)[emotion]
            if model is not None:
                trained = replace(trained, model=model)
            params = self.params.model_copy(update={"ig": self.params.ig.model_copy(update={"steps": steps})})
            bases = self.other_baselines(seed, emotion, strategy)
            res = attribute(trained, self.data, samples, bases, params)
            self.computed += 1
            self._masks[key] = landmark_mask(res.attributions).reshape(len(bases), len(samples), -1).mean(axis=0)
        return self._masks[key]
