"""The demo's expressions: FACS-inspired action units as landmark displacements, one library the
emotions' prototypes share, the motions that belong to no emotion, and the ground truth.

Emotions that share an action unit in FACS share the very same motion: fear and surprise both
raise the brows (AU1+2) and drop the jaw (AU26); anger, disgust and fear lower or draw the brows
together (AU4); sadness and disgust both raise the chin (AU17). ``ground_truth`` names the
landmarks each emotion's prototype moves; speech, blinks and head motion are in no emotion's set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from emolib.data.faces import reference_layout
from emolib.vocab import EMOTIONS, N_LANDMARKS

# Expression programs below are written at a moderate strength; this scales them to what
# FaceMesh measures clearly above its own frame-to-frame jitter (CK+ peaks are strong too: a
# smile moves the lip corners by about 0.15 outer-eye-corner distances).
EXPRESSION_SCALE = 2.0


# A landmark "moves" for an emotion when its peak displacement reaches this many face units
# (distance between the outer eye corners; about 3 px at the default 360 px frames), with every
# action unit of the emotion's prototype at its nominal gain and intensity 1.
GROUND_TRUTH_MIN_DISPLACEMENT = 0.03


# Anatomical landmark groups (MediaPipe FaceMesh ids, both sides).
LIP_CORNERS = (61, 291, 78, 308)


INNER_BROWS = (55, 285, 107, 336, 65, 295)


NOSE_WINGS = (48, 278, 64, 294, 115, 344, 98, 327)


NOSE_TIP = (1, 19, 94, 2)  # midline, tip to the base of the columella


CHEEKS = (205, 425, 50, 280)


CHIN = (152, 175, 199, 200, 18, 148, 377, 176, 400)



def _ids(name: str) -> tuple[int, ...]:
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return tuple(sorted({i for edge in getattr(fmc, name) for i in edge}))


@dataclass(frozen=True)
class Action:
    """Move ``anchors`` (and, fading with distance ``radius``, their neighbours) by ``vector``.

    ``vector`` is (outward, down) in face units: outward is away from the facial midline, so one
    action moves both sides symmetrically; ``only`` restricts which landmarks may move.
    """

    anchors: tuple[int, ...]
    radius: float
    vector: tuple[float, float]
    only: Optional[Callable[[np.ndarray], np.ndarray]] = None


def _groups(layout: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Masks over the reference layout: which landmarks an action may move."""
    y = layout[:, 1]
    eye_line = y[[33, 263, 133, 362]].mean()
    mouth_line = y[list(LIP_CORNERS)].mean()
    lips = np.zeros(N_LANDMARKS, bool)
    lips[list(_ids("FACEMESH_LIPS"))] = True
    upper_lip = lips & (y < mouth_line - 0.005)
    eyes = np.zeros(N_LANDMARKS, bool)
    eyes[list(_ids("FACEMESH_LEFT_EYE") + _ids("FACEMESH_RIGHT_EYE"))] = True
    eye_centre = y[list(_ids("FACEMESH_LEFT_EYE") + _ids("FACEMESH_RIGHT_EYE"))].mean()
    return {
        "above_eyes": lambda _: y < eye_line - 0.06,
        "upper_lids": lambda _: eyes & (y < eye_centre),
        "below_mouth": lambda _: (y > mouth_line + 0.005) & ~upper_lip,
        "not_lower_lip": lambda _: ~(lips & (y > mouth_line + 0.005)),
        "upper_lip": lambda _: upper_lip,
        "lower_lip": lambda _: lips & (y > mouth_line + 0.005),
        "mouth_area": lambda _: y > eye_line + 0.25,
    }


def action_units(layout: np.ndarray) -> dict[str, tuple[str, list[Action]]]:
    """The action units the expression programs are built from: name -> (description, actions).

    One library for every emotion, so two emotions that share an action unit in FACS move the
    very same landmarks the same way (demo version 4; up to version 3 each emotion had its own
    brow raise, jaw drop and chin raise).
    """
    g = _groups(layout)
    brows = _ids("FACEMESH_LEFT_EYEBROW") + _ids("FACEMESH_RIGHT_EYEBROW")
    upper_lids = tuple(int(i) for i in np.where(g["upper_lids"](layout))[0])
    upper_lip = tuple(int(i) for i in np.where(g["upper_lip"](layout))[0])
    lower_lip = tuple(int(i) for i in np.where(g["lower_lip"](layout))[0])
    return {
        "AU1": ("inner brows raised", [Action(INNER_BROWS[:4], 0.05, (0.01, -0.065), g["above_eyes"])]),
        "AU1+2": ("brows raised", [Action(brows, 0.07, (0.0, -0.08), g["above_eyes"])]),
        "AU4": ("brows lowered and drawn together", [
            Action(brows, 0.07, (0.0, 0.06), g["above_eyes"]),
            Action(INNER_BROWS, 0.07, (-0.06, 0.03), g["above_eyes"]),
        ]),
        "AU5": ("upper lids raised", [Action(upper_lids, 0.03, (0.0, -0.03), g["upper_lids"])]),
        "AU6": ("cheeks raised", [Action(CHEEKS, 0.08, (0.0, -0.04))]),
        "AU7": ("lids tightened", [Action(upper_lids, 0.03, (0.0, 0.02), g["upper_lids"])]),
        # The nose wings move the lower nose, tip included (FaceMesh lifts it with them), over a
        # small radius: the cheek skin beside them barely moves in the mesh (demo version 3).
        "AU9": ("nose wrinkled", [Action(NOSE_WINGS + NOSE_TIP, 0.045, (0.0, -0.085))]),
        "AU10": ("upper lip raised", [Action(upper_lip, 0.05, (0.0, -0.05), g["not_lower_lip"])]),
        "AU12": ("lip corners pulled up and out", [Action(LIP_CORNERS, 0.09, (0.07, -0.07), g["mouth_area"])]),
        "AU15": ("lip corners pulled down", [Action(LIP_CORNERS, 0.08, (0.0, 0.07), g["mouth_area"])]),
        "AU17": ("chin raised, pushing the lower lip up", [
            Action(lower_lip + CHIN, 0.12, (0.0, -0.04), g["below_mouth"])]),
        "AU20": ("lips stretched", [Action(LIP_CORNERS, 0.08, (0.08, 0.01), g["mouth_area"])]),
        "AU24": ("lips pressed", [
            Action(upper_lip, 0.02, (0.0, 0.03), g["upper_lip"]),
            Action(lower_lip, 0.02, (0.0, -0.035), g["lower_lip"]),
            Action(LIP_CORNERS, 0.04, (-0.03, 0.0), g["mouth_area"]),
        ]),
        "AU26": ("jaw dropped", [Action(lower_lip + CHIN, 0.12, (0.0, 0.11), g["below_mouth"])]),
        "AU14": ("one lip corner tightened and raised (left side only)", [
            Action((291, 308), 0.08, (0.06, -0.045), lambda _: layout[:, 0] > 0.02)]),
    }


# Each emotion's prototype: (action unit, nominal gain, probability that a sequence shows it).
# After the FACS/EMFACS prototypes, which list variants (surprise 1+2+5+26 or 1+2+26 or 1+2+5,
# fear 1+2+4+5+20+26 or without some, disgust 9+17 or 10+17 or 9+10, sadness 1+4+15 or 1+15+17):
# an action unit with probability below 1 is left out of some sequences. Shared on purpose:
# AU1+2 and AU26 (surprise, fear), AU4 (anger, disgust, fear), AU17 (sadness, disgust).
#
# Disgust is written for what FaceMesh measures (demo version 3): its mesh does not let the raised
# upper lip open the mouth; lower lip and chin go up with it by about as much, which AU17 plants.
PROTOTYPES: dict[str, list[tuple[str, float, float]]] = {
    "happiness": [("AU12", 1.0, 1.0), ("AU6", 1.0, 0.8)],
    "surprise": [("AU1+2", 1.0, 1.0), ("AU5", 1.0, 0.8), ("AU26", 1.0, 0.8)],
    "anger": [("AU4", 1.0, 1.0), ("AU7", 1.0, 0.7), ("AU24", 1.0, 0.7)],
    "disgust": [("AU9", 1.0, 0.8), ("AU10", 1.0, 1.0), ("AU17", 1.0, 0.7), ("AU4", 0.6, 0.6)],
    "fear": [("AU1+2", 1.0, 1.0), ("AU4", 0.5, 0.8), ("AU5", 1.0, 0.8), ("AU20", 1.0, 0.8),
             ("AU26", 0.45, 0.7)],
    "sadness": [("AU1", 1.0, 1.0), ("AU15", 1.0, 1.0), ("AU17", 0.6, 0.7)],
    "contempt": [("AU14", 1.0, 1.0)],
}


def expression_programs(layout: np.ndarray) -> dict[str, tuple[str, list[Action]]]:
    """Each emotion's (description, actions) at its nominal strength (every action unit of its
    prototype, at its nominal gain), on the reference layout.

    The programs are meant to plant what FaceMesh measures, since the study can only find that.
    Disgust (demo version 3) is written that way after measuring FaceMesh on warped photos: up to
    version 2 it raised the upper lip alone and moved the cheek skin around the nose wings, and
    FaceMesh instead lifted the lower lip and chin with the upper lip and left the cheek still,
    so the measured-motion ranking found only 41-44% of the planted landmarks.
    """
    units = action_units(layout)
    programs = {}
    for emotion, prototype in PROTOTYPES.items():
        text = ", ".join(f"{units[au][0]} ({au}{'' if p == 1.0 else ', in some sequences'})"
                         for au, _, p in prototype)
        actions = [Action(a.anchors, a.radius, (gain * a.vector[0], gain * a.vector[1]), a.only)
                   for au, gain, _ in prototype for a in units[au][1]]
        programs[emotion] = (text, actions)
    return programs


def program_displacement(layout: np.ndarray, actions: list[Action]) -> np.ndarray:
    """(468, 2) face-unit displacement at full intensity of a list of actions."""
    total = np.zeros((N_LANDMARKS, 2))
    # Smooth sign of the lateral position: midline landmarks do not move sideways.
    outward = np.tanh(layout[:, 0] / 0.05)
    for action in actions:
        anchors = layout[list(action.anchors)]
        d2 = ((layout[:, None, :] - anchors[None, :, :]) ** 2).sum(-1).min(axis=1)
        weight = np.exp(-d2 / (2.0 * action.radius ** 2))
        weight[weight < 0.02] = 0.0
        if action.only is not None:
            weight = weight * action.only(layout)
        total[:, 0] += weight * action.vector[0] * outward
        total[:, 1] += weight * action.vector[1]
    return total


def expression_displacements(layout: np.ndarray) -> dict[str, np.ndarray]:
    """Each emotion's (468, 2) face-unit landmark displacement at peak (nominal strength)."""
    return {e: EXPRESSION_SCALE * program_displacement(layout, actions)
            for e, (_, actions) in expression_programs(layout).items()}


def action_unit_displacements(layout: np.ndarray) -> dict[str, np.ndarray]:
    """Each action unit's (468, 2) face-unit displacement at gain 1 (what a sequence mixes)."""
    return {au: EXPRESSION_SCALE * program_displacement(layout, actions)
            for au, (_, actions) in action_units(layout).items()}


def shared_motions(layout: np.ndarray) -> dict[str, np.ndarray]:
    """The motions that belong to no emotion, as (468, 2) face-unit displacements per unit of
    amplitude: ``jaw`` (speech: lower lip and chin down, 1 face unit at the chin) and ``round``
    (speech: lip corners drawn in, 1 face unit at the corners). Blinks and head motion are not
    landmark programs (see :func:`close_eyes` and :func:`pose_displacement`)."""
    g = _groups(layout)
    lower_lip = tuple(int(i) for i in np.where(g["lower_lip"](layout))[0])
    return {
        "jaw": program_displacement(layout, [Action(lower_lip + CHIN, 0.12, (0.0, 1.0), g["below_mouth"])]),
        "round": program_displacement(layout, [Action(LIP_CORNERS, 0.06, (-1.0, 0.0), g["mouth_area"])]),
    }


def ground_truth(image_size: int = 360) -> dict:
    """The landmarks each emotion's program moves (peak displacement >= the threshold, at the
    nominal strength). Blinks, speech and head motion are in no emotion's set."""
    layout = reference_layout(image_size)
    landmarks, description = {}, {}
    peaks = expression_displacements(layout)
    for emotion, (text, _) in expression_programs(layout).items():
        if emotion not in EMOTIONS:
            continue
        moved = np.linalg.norm(peaks[emotion], axis=1)
        landmarks[emotion] = [int(i) for i in np.where(moved >= GROUND_TRUTH_MIN_DISPLACEMENT)[0]]
        description[emotion] = text
    return {"landmarks": landmarks, "description": description,
            "threshold": f"peak displacement >= {GROUND_TRUTH_MIN_DISPLACEMENT} face units "
                         "(outer-eye-corner distance), every action unit of the prototype at its "
                         "nominal gain; blinks, speech and head motion are in no set"}


def identity_displacement(layout: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random, symmetric face-shape change for one subject (face units)."""
    centre = layout.mean(axis=0)
    scale, aspect = rng.uniform(0.94, 1.06), rng.uniform(0.95, 1.05)
    total = (layout - centre) * np.array([scale - 1.0, scale * aspect - 1.0])
    eyes = _ids("FACEMESH_LEFT_EYE") + _ids("FACEMESH_RIGHT_EYE")
    brows = _ids("FACEMESH_LEFT_EYEBROW") + _ids("FACEMESH_RIGHT_EYEBROW")
    oval = _ids("FACEMESH_FACE_OVAL")
    jaw = tuple(i for i in oval if layout[i, 1] > layout[152, 1] * 0.6)
    actions = [
        Action(eyes, 0.08, (rng.uniform(-0.03, 0.03), 0.0)),
        Action(brows, 0.08, (0.0, rng.uniform(-0.03, 0.03))),
        Action(LIP_CORNERS, 0.10, (rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03))),
        Action(NOSE_WINGS + (1, 2, 4), 0.08, (rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02))),
        Action(jaw, 0.12, (rng.uniform(-0.04, 0.04), 0.0)),
    ]
    return total + program_displacement(layout, actions)

