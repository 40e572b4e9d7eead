"""Stage 01: from videos, CK+ image sequences or landmark files to ``data/landmarks.npz``.

:mod:`~emolib.data.sources` (the readers of CK+ and video folders), :mod:`~emolib.data.facemesh`
(MediaPipe per frame, the crop, mirror symmetry), :mod:`~emolib.data.extract` (worker processes and
the per-sequence cache), :mod:`~emolib.data.sequences` (missing frames, resampling),
:mod:`~emolib.data.demo` and :mod:`~emolib.data.photos` (the generated demo dataset),
:mod:`~emolib.data.stage` (the stage). Kept light on purpose: extraction workers import this
package, and must not import TensorFlow.
"""
