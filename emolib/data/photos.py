"""The public-domain face photos the demo dataset is made from (they ship inside installed packages:
nothing is downloaded)."""
from __future__ import annotations

import numpy as np

# Frontal faces only. scikit-image's cameraman (used up to version 1) is left out: his face is
# turned and half hidden by the camera, and FaceMesh's mesh on it does not follow the warps (its
# measured motion correlated -0.5 to 0.7 with the planted one, against 0.5 to 0.9 on these two;
# with his subjects, the measured-motion ranking found 13% of sadness's planted landmarks,
# without them 79%).
PHOTOS = ("astronaut", "grace_hopper")


def load_base_photos() -> dict[str, np.ndarray]:
    """The photos the demo is made from (:data:`PHOTOS`), as RGB uint8 arrays (no download: they
    ship with scikit-image and matplotlib)."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg
    import skimage.data

    loaders = {
        "astronaut": lambda: skimage.data.astronaut(),
        "grace_hopper": lambda: mpimg.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
    }
    return {name: np.ascontiguousarray(loaders[name]()[:, :, :3]) for name in PHOTOS}

