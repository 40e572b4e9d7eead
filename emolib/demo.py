"""Deprecated: moved to :mod:`emolib.data.demo` (reading a name here warns and returns it)."""
from emolib._deprecated import module_getattr as _module_getattr

__getattr__ = _module_getattr(__name__, {
    **{n: "emolib.data.demo" for n in ("DEMO_VERSION", "MARKER", "CODES", "EXPRESSION_SCALE",
                                       "GROUND_TRUTH_MIN_DISPLACEMENT", "BaseFace", "base_faces", "FaceFrame",
                                       "reference_layout", "Action", "expression_programs", "program_displacement",
                                       "expression_displacements", "ground_truth", "identity_displacement",
                                       "FaceWarper", "write_demo_dataset")},
    "PHOTOS": "emolib.data.photos", "load_base_photos": "emolib.data.photos",
})
