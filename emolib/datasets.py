"""Deprecated: moved to :mod:`emolib.data.sources` (reading a name here warns and returns it)."""
from emolib._deprecated import module_getattr as _module_getattr

__getattr__ = _module_getattr(__name__, {n: "emolib.data.sources" for n in (
    "CKPLUS_CODES", "LABEL_ALIASES", "LEFT_OUT_LABELS", "IMAGE_SUFFIXES", "VIDEO_COLUMNS", "SequenceInfo",
    "read_frame", "iter_video_frames", "iter_frames", "parse_emotion_label", "read_ckplus", "require_usable",
    "normalise_label", "read_video_folder")})
