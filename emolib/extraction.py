"""Deprecated: the flat module of emolib 0.1; see :mod:`emolib.data` (reading one of its names here
warns and returns it)."""
from emolib._deprecated import module_getattr as _module_getattr

__getattr__ = _module_getattr(__name__, {
    **{n: "emolib.data.facemesh" for n in ("CROP_MARGIN", "MIDLINE_LANDMARKS", "mirror_permutation",
                                           "derive_mirror_permutation", "mirror_landmarks", "square_box",
                                           "crop_square", "FaceMeshExtractor", "SequenceLandmarks")},
    **{n: "emolib.data.sequences" for n in ("fill_missing_frames", "resample_sequence")},
    **{n: "emolib.data.extract" for n in ("EXTRACTOR_VERSION", "sequence_cache_key", "extract_sequences")},
    **{n: "emolib.data.stage" for n in ("list_sequences", "demo_source_path", "prepare_landmarks",
                                        "cached_sequence", "example_frames", "check_outputs")},
    "read_report": "emolib._compat", "REPORT_COLUMNS": "emolib.vocab:EXTRACTION_REPORT_COLUMNS",
})
