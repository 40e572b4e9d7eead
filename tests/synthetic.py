"""Small synthetic landmark sets with a planted signal, for unit tests of the later stages.

Not MediaPipe output: random face-like positions per subject, and for each emotion a known set of
landmarks that moves from neutral (frame 0) to peak (last frame). The end-to-end test runs the
real pipeline (demo images through MediaPipe); these keep unit tests fast.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emolib import EMOTIONS, N_LANDMARKS
from emolib.landmarks import LandmarkSet, save_landmarks


def planted_landmarks(n_per_emotion: int = 20, seed: int = 1234) -> dict[str, np.ndarray]:
    """The landmark ids each emotion moves (disjoint sets)."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(N_LANDMARKS)
    return {e: np.sort(ids[i * n_per_emotion:(i + 1) * n_per_emotion]) for i, e in enumerate(EMOTIONS)}


def make_landmark_set(subjects: int = 6, frames: int = 6, n_landmarks: int = N_LANDMARKS,
                      emotions=EMOTIONS, flip: bool = True, amplitude: float = 0.03,
                      noise: float = 0.004, seed: int = 0) -> LandmarkSet:
    """One sequence per (subject, emotion), optionally with flipped copies."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.25, 0.75, size=(2, N_LANDMARKS))
    planted = planted_landmarks()
    X, emo, subj, seq, flipped = [], [], [], [], []
    ramp = np.linspace(0.0, 1.0, frames)[:, None, None]
    for s in range(subjects):
        identity = base + rng.normal(0, 0.01, size=base.shape)
        for e in emotions:
            move = np.zeros((2, N_LANDMARKS))
            direction = rng.normal(size=(2, len(planted[e])))
            direction /= np.linalg.norm(direction, axis=0, keepdims=True)
            move[:, planted[e]] = amplitude * direction
            seqx = identity[None] + ramp * move[None] + rng.normal(0, noise, size=(frames, 2, N_LANDMARKS))
            seqx = seqx[..., :n_landmarks]
            for f in ([False, True] if flip else [False]):
                x = seqx.copy()
                if f:
                    x[:, 0] = 1.0 - x[:, 0]
                X.append(x)
                emo.append(e)
                subj.append(f"S{s:03d}")
                seq.append(f"S{s:03d}_{e}")
                flipped.append(f)
    return LandmarkSet(np.asarray(X, np.float32), np.array(emo), np.array(subj), np.array(seq),
                       np.array(flipped), np.arange(n_landmarks))


def write_synthetic_run(run_dir: str | Path, params_yaml: str | Path, **kwargs) -> Path:
    """A run folder holding params.yaml and data/landmarks.npz, as stage 01 would leave it."""
    from emolib import io
    from emolib.config import load_params
    from emolib.run_folder import RunFolder

    params = load_params(params_yaml)
    run = RunFolder(Path(run_dir)).ensure()
    io.write_text(run.params_path, params.to_yaml())
    kwargs.setdefault("frames", params.frames)
    save_landmarks(run.landmarks, make_landmark_set(**kwargs))
    io.write_json(run.data / "ground_truth.json",
                  {"landmarks": {e: v.tolist() for e, v in planted_landmarks().items()}})
    return run.root
