"""The demo's faces and how they are warped: the base photos' landmarks, a face-centred frame in face
units, the symmetric reference layout and its depth, head turns as parallax, blinks, and the warp.

The warp is a smooth displacement field: Gaussian radial basis functions interpolate the landmark
displacements (anchored at zero along the image border), evaluated on a coarse grid, upsampled,
and applied with ``cv2.remap``. Displacements are written in face units (the distance between the
outer eye corners) on one symmetric reference layout of the 468 landmarks, so they mean the same on
every subject.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from emolib.data.photos import load_base_photos
from emolib.errors import EmolibError
from emolib.vocab import N_LANDMARKS


@dataclass
class BaseFace:
    """One starting face: a square image with the face in its middle and its 468 landmarks.

    Attributes:
        name: photo name (``_mirrored`` appended for the mirror image).
        image: (S, S, 3) float32 RGB in 0..255.
        colour: whether the photo has colour.
        points: (468, 2) landmark pixel positions in ``image``.
    """

    name: str
    image: np.ndarray
    colour: bool
    points: np.ndarray


@lru_cache(maxsize=4)
def base_faces(image_size: int) -> tuple[BaseFace, ...]:
    """The starting faces (the photos and their mirror images) at ``image_size`` pixels.

    Raises:
        EmolibError: FaceMesh finds no face in a photo (a broken installation).
    """
    import cv2

    from emolib.data.facemesh import FaceMeshExtractor, mirror_permutation, square_box

    faces: list[BaseFace] = []
    with FaceMeshExtractor() as extractor:
        for name, photo in load_base_photos().items():
            landmarks = extractor.landmarks(photo)
            if landmarks is None:
                raise EmolibError(f"demo: FaceMesh found no face in the {name} photo")
            height, width = photo.shape[:2]
            pixels = landmarks * np.array([width, height], dtype=np.float32)
            # Face about half the frame wide, as in CK+ (640 x 490 frames, faces ~250 px).
            x0, y0, side = square_box(pixels, margin=1.0)
            scale = image_size / side
            matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float64)
            image = cv2.warpAffine(photo, matrix, (image_size, image_size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT101)
            points = (pixels - np.array([x0, y0], dtype=np.float32)) * np.float32(scale)
            colour = bool(np.abs(photo[..., 0].astype(int) - photo[..., 2].astype(int)).mean() > 2)
            faces.append(BaseFace(name, image.astype(np.float32), colour, points.astype(np.float64)))
        perm = mirror_permutation()
        for face in list(faces):
            mirrored = face.points[perm].copy()
            mirrored[:, 0] = image_size - mirrored[:, 0]
            faces.append(BaseFace(face.name + "_mirrored", np.ascontiguousarray(face.image[:, ::-1]),
                                  face.colour, mirrored))
    return tuple(faces)


@dataclass
class FaceFrame:
    """Face-centred coordinates in face units (the outer-eye-corner distance of a frontal face).

    Origin between the outer eye corners (landmarks 33 and 263). ``ex`` is the image vector of one
    face unit across the face, from the subject's right eye towards the left one (33 -> 263): in a
    turned head it is foreshortened, as sideways motion is. ``ey`` is one face unit down, towards
    the chin, sized from the eye-to-chin distance (1.16 face units on the frontal photos), which a
    turned head does not shorten. In a mirrored photo ``ex`` points the other way in the image, so
    face coordinates stay anatomical.
    """

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray

    EYES_TO_CHIN = 1.16  # eye-line-to-chin distance in outer-eye-corner distances (frontal photos)

    @classmethod
    def of(cls, points: np.ndarray) -> "FaceFrame":
        origin = (points[33] + points[263]) / 2.0
        return cls(origin, points[263] - points[33], (points[152] - origin) / cls.EYES_TO_CHIN)

    @property
    def unit(self) -> float:
        """Pixels per face unit (vertical, so not shortened by a turned head)."""
        return float(np.linalg.norm(self.ey))

    def to_face(self, points: np.ndarray) -> np.ndarray:
        basis = np.stack([self.ex, self.ey], axis=1)  # columns: face axes in image pixels
        return np.linalg.solve(basis, (points - self.origin).T).T

    def displacement_to_image(self, face_displacement: np.ndarray) -> np.ndarray:
        return face_displacement[:, :1] * self.ex + face_displacement[:, 1:] * self.ey


@lru_cache(maxsize=4)
def reference_layout(image_size: int) -> np.ndarray:
    """(468, 2) mean face-unit positions of the landmarks over the base faces, exactly symmetric."""
    return np.mean([FaceFrame.of(f.points).to_face(f.points) for f in base_faces(image_size)], axis=0)


@lru_cache(maxsize=1)
def reference_depth() -> np.ndarray:
    """(468,) landmark depth towards the camera in face units, averaged over the base faces and
    exactly symmetric: FaceMesh's own depth estimate (its z) of the photos. Used to render small
    head turns as the parallax of a 3D face (the nose tip moves more than the cheeks)."""
    from mediapipe.python.solutions import face_mesh

    from emolib.data.facemesh import _quiet_native_logs, mirror_permutation

    depths = []
    with _quiet_native_logs():
        mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)
    try:
        for name, photo in load_base_photos().items():
            with _quiet_native_logs():
                result = mesh.process(photo)
            if not result.multi_face_landmarks:
                raise EmolibError(f"demo: FaceMesh found no face in the {name} photo")
            height, width = photo.shape[:2]
            marks = result.multi_face_landmarks[0].landmark
            xyz = np.array([(m.x * width, m.y * height, m.z * width) for m in marks][:N_LANDMARKS])
            # MediaPipe's z is in about the same (pixel) scale as x, smaller = closer to the camera.
            depths.append(-xyz[:, 2] / FaceFrame.of(xyz[:, :2]).unit)
    finally:
        mesh.close()
    depth = np.mean(depths, axis=0)
    return (depth + depth[mirror_permutation()]) / 2.0


# The head turns (yaw, pitch) about its centre, this many face units behind the nose tip (a head
# is about 20 cm deep, the outer eye corners about 9-10 cm apart).
HEAD_CENTRE_BEHIND_NOSE = 1.0


def pose_displacement(layout: np.ndarray, depth: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(468, 2) face-unit landmark displacement of a head turned by ``yaw_deg`` (about the vertical
    axis) and nodded by ``pitch_deg`` (about the horizontal one), both through the head's centre
    (:data:`HEAD_CENTRE_BEHIND_NOSE` behind the nose tip), seen by a distant camera: each landmark
    moves by its depth times the sine, and the face foreshortens by the cosine."""
    behind = depth - (depth[1] - HEAD_CENTRE_BEHIND_NOSE)  # distance in front of the head's centre
    yaw, pitch = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    out = np.empty((len(layout), 2))
    out[:, 0] = layout[:, 0] * (np.cos(yaw) - 1.0) + behind * np.sin(yaw)
    out[:, 1] = layout[:, 1] * (np.cos(pitch) - 1.0) + behind * np.sin(pitch)
    return out


# The eyes for a blink: outer corner, inner corner, middle of the upper lid, middle of the lower lid.
EYES = ((33, 133, 159, 145), (263, 362, 386, 374))


def close_eyes(image: np.ndarray, points: np.ndarray, closure: float, down: np.ndarray) -> np.ndarray:
    """Bring both upper lids down by ``closure`` (1 = onto the lower lid): a blink.

    The RBF field is far too smooth for a lid a few pixels tall, so this is its own warp of each
    eye's box at full resolution: along the eye's vertical axis, the lid and the skin above it
    slide down over the eyeball, which stays in place below the lid's new edge.

    Args:
        image: (H, W, C) float32 frame (already warped).
        points: (468, 2) the landmarks' pixel positions in ``image``.
        closure: 0..1.
        down: the face's downward direction in the image (any length).
    """
    import cv2

    if closure <= 0:
        return image
    out = image.copy()
    height, width = image.shape[:2]
    for outer, inner, top_id, bottom_id in EYES:
        c0, c1 = points[outer], points[inner]
        middle = (c0 + c1) / 2.0
        half = max(float(np.linalg.norm(c1 - c0)) / 2.0, 1.0)
        axis = (c1 - c0) / (2.0 * half)
        normal = np.array([-axis[1], axis[0]])
        if normal @ down < 0:
            normal = -normal
        lid_up = max(float(-(points[top_id] - middle) @ normal), 1.0)
        lid_down = max(float((points[bottom_id] - middle) @ normal), 1.0)
        # the box holds the eye and the skin that slides (up to 1.5 openings above the lid)
        reach = max(1.1 * half, lid_up + 1.6 * (lid_down + lid_up) + 2.0)
        x0, y0 = (max(int(np.floor(v - reach)), 0) for v in middle)
        x1, y1 = min(int(np.ceil(middle[0] + reach)) + 1, width), min(int(np.ceil(middle[1] + reach)) + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        u = ((gx - middle[0]) * axis[0] + (gy - middle[1]) * axis[1]) / half
        v = (gx - middle[0]) * normal[0] + (gy - middle[1]) * normal[1]
        shape = np.clip(1.0 - u * u, 0.0, 1.0) ** 0.6  # the lids' curve, 0 at the corners
        lid = -lid_up * shape                         # the upper lid's edge now
        edge = lid + closure * (lid_down + lid_up) * shape  # ... and where it comes down to
        top = lid - 1.5 * (lid_down + lid_up) * shape       # skin above this does not move
        moving = (v > top) & (v < edge)
        source = np.where(moving, top + (v - top) * (lid - top) / np.maximum(edge - top, 1e-6), v)
        shift = (source - v).astype(np.float32)
        mapped = cv2.remap(image, gx + shift * np.float32(normal[0]), gy + shift * np.float32(normal[1]),
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        out[y0:y1, x0:x1] = mapped
    return out


class FaceWarper:
    """Warps one base face by landmark displacements (a Gaussian RBF field) plus a head motion.

    The RBF weights for any displacement are one matrix product, prepared once per face: the
    field on a coarse grid is ``field_matrix @ displacement``.
    """

    GRID_STEP = 8  # pixels between coarse-grid nodes; the field is smooth at this scale

    def __init__(self, face: BaseFace) -> None:
        size = face.image.shape[0]
        self.face = face
        self.frame = FaceFrame.of(face.points)
        self.size = size
        sigma = 0.2 * self.frame.unit
        border = np.linspace(0, size - 1, 9)
        anchors = np.array([(x, y) for x in border for y in (0, size - 1)] +
                           [(x, y) for y in border[1:-1] for x in (0, size - 1)], dtype=float)
        centres = np.vstack([face.points, anchors])
        d2 = ((centres[:, None] - centres[None]) ** 2).sum(-1)
        kernel = np.exp(-d2 / (2 * sigma ** 2))
        # A small ridge keeps the solve stable: landmarks lie closer together than sigma.
        weights_from_values = np.linalg.solve(kernel + 1e-3 * np.eye(len(centres)), np.eye(len(centres)))
        steps = np.arange(0, size + self.GRID_STEP, self.GRID_STEP, dtype=float)
        self.grid_n = len(steps)
        gx, gy = np.meshgrid(steps, steps)
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        phi = np.exp(-((grid[:, None] - centres[None]) ** 2).sum(-1) / (2 * sigma ** 2))
        # Only the landmark columns matter: anchors always move by zero.
        self.field_matrix = (phi @ weights_from_values)[:, :N_LANDMARKS].astype(np.float32)
        self.grid_x, self.grid_y = gx.astype(np.float32), gy.astype(np.float32)

    def render(self, face_displacement: np.ndarray, angle_deg: float, shift: tuple[float, float],
               scale: float) -> np.ndarray:
        """The warped image (float32 RGB, 0..255).

        Args:
            face_displacement: (468, 2) landmark displacement in face units.
            angle_deg, shift, scale: head motion (about the face centre), shift in pixels.
        """
        import cv2

        moves = self.frame.displacement_to_image(face_displacement).astype(np.float32)
        field = (self.field_matrix @ moves).reshape(self.grid_n, self.grid_n, 2)
        # Output pixel p shows source q - D(q), q = p with the head motion undone. The head moves
        # by a few pixels while D varies over tens, so D(q) ~ D(p): the whole map is then affine
        # plus a smooth field, and is exact enough built on the coarse grid and upsampled.
        centre = self.frame.origin
        theta = np.deg2rad(angle_deg)
        cos, sin = np.cos(theta) / scale, np.sin(theta) / scale
        px, py = self.grid_x - centre[0] - shift[0], self.grid_y - centre[1] - shift[1]
        coarse = np.empty_like(field)
        coarse[..., 0] = cos * px + sin * py + centre[0] - field[..., 0]
        coarse[..., 1] = -sin * px + cos * py + centre[1] - field[..., 1]
        span = (self.grid_n - 1) * self.GRID_STEP
        mapping = cv2.resize(coarse, (span + 1, span + 1), interpolation=cv2.INTER_LINEAR)[:self.size, :self.size]
        return cv2.remap(self.face.image, mapping[..., 0], mapping[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT101)

    def positions(self, face_displacement: np.ndarray, angle_deg: float, shift: tuple[float, float],
                  scale: float) -> np.ndarray:
        """(468, 2) pixel positions of the landmarks in the frame :meth:`render` draws (to first
        order: the field carries each landmark by its own displacement, then the head motion)."""
        moved = self.face.points + self.frame.displacement_to_image(face_displacement)
        theta = np.deg2rad(angle_deg)
        cos, sin = np.cos(theta) * scale, np.sin(theta) * scale
        rel = moved - self.frame.origin
        # render shows source M (p - c - shift) + c at p, M = R(-theta) / scale: invert it
        out = np.empty_like(rel)
        out[:, 0] = cos * rel[:, 0] - sin * rel[:, 1]
        out[:, 1] = sin * rel[:, 0] + cos * rel[:, 1]
        return out + self.frame.origin + np.asarray(shift, dtype=float)

    def down(self, angle_deg: float) -> np.ndarray:
        """The face's downward direction in the rendered frame."""
        theta = np.deg2rad(angle_deg)
        ey = self.frame.ey
        return np.array([np.cos(theta) * ey[0] - np.sin(theta) * ey[1], np.sin(theta) * ey[0] + np.cos(theta) * ey[1]])

