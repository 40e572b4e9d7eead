"""Deprecated: moved to :mod:`emolib.data.demo`, :mod:`emolib.data.faces`, :mod:`emolib.data.expressions`
and :mod:`emolib.data.photos` (reading a name here warns and returns it)."""
from emolib._deprecated import module_getattr as _module_getattr

__getattr__ = _module_getattr(__name__, {
    **{n: "emolib.data.demo" for n in ("DEMO_VERSION", "MARKER", "CODES", "Difficulty", "DIFFICULTY",
                                       "write_demo_dataset", "make_subject", "make_scene", "sequence_motion")},
    **{n: "emolib.data.faces" for n in ("BaseFace", "base_faces", "FaceFrame", "reference_layout", "reference_depth",
                                        "pose_displacement", "close_eyes", "FaceWarper")},
    **{n: "emolib.data.expressions" for n in ("EXPRESSION_SCALE", "GROUND_TRUTH_MIN_DISPLACEMENT", "Action",
                                              "action_units", "PROTOTYPES", "expression_programs",
                                              "program_displacement", "expression_displacements", "ground_truth",
                                              "identity_displacement", "shared_motions")},
    "PHOTOS": "emolib.data.photos", "load_base_photos": "emolib.data.photos",
})
