"""emolib: explainable, landmark-based emotion recognition.

A thin library behind five parameterised notebooks (data prep, training, global Integrated
Gradients, landmark pruning, results). See docs/DESIGN.md for the method and the run-folder
contract, and docs/ARCHITECTURE.md for how the package is laid out.
"""
import os as _os

# tf-keras (Keras 2 API) must be selected before TensorFlow is first imported anywhere.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.2.0"

from emolib.errors import DataError, EmolibError, ParamsError  # noqa: E402
from emolib.vocab import EMOTIONS, N_LANDMARKS  # noqa: E402

__all__ = ["EMOTIONS", "N_LANDMARKS", "EmolibError", "ParamsError", "DataError", "__version__"]
