"""emolib: explainable, landmark-based emotion recognition.

A thin library behind five parameterised notebooks (data prep, training, global Integrated
Gradients, landmark pruning, results). See DESIGN.md for the method and the run-folder contract.
"""
import os as _os

# tf-keras (Keras 2 API) must be selected before TensorFlow is first imported anywhere.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
N_LANDMARKS = 468

from emolib.errors import EmolibError, ParamsError, DataError  # noqa: E402

__all__ = ["EMOTIONS", "N_LANDMARKS", "EmolibError", "ParamsError", "DataError", "__version__"]
