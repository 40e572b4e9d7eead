"""The numbers the paper reports (Di Luzio, Rosato, Panella: "An Explainable Fast Deep Neural
Network for Emotion Recognition"), for putting beside ours when the data is CK+."""
from __future__ import annotations

K_VALUES = (468, 234, 128, 64, 32, 16)

# Tables 6 (T-EMO) and 7 (R-EMO): mean, std accuracy per emotion and K.
ACCURACY = {
    "t-emo": {
        "anger": [(0.924, 0.016), (0.926, 0.037), (0.905, 0.037), (0.903, 0.034), (0.924, 0.030), (0.891, 0.041)],
        "disgust": [(0.934, 0.019), (0.964, 0.027), (0.964, 0.019), (0.951, 0.034), (0.948, 0.040), (0.925, 0.045)],
        "fear": [(0.948, 0.024), (0.971, 0.023), (0.974, 0.020), (0.964, 0.026), (0.950, 0.026), (0.919, 0.041)],
        "happiness": [(0.986, 0.008), (0.988, 0.011), (0.982, 0.014), (0.979, 0.018), (0.981, 0.015), (0.978, 0.012)],
        "sadness": [(0.920, 0.026), (0.905, 0.052), (0.916, 0.020), (0.914, 0.040), (0.922, 0.018), (0.910, 0.029)],
        "surprise": [(0.993, 0.009), (0.995, 0.021), (0.995, 0.008), (0.993, 0.012), (0.991, 0.009), (0.986, 0.007)],
    },
    "r-emo": {
        "anger": [(0.889, 0.018), (0.874, 0.032), (0.862, 0.04), (0.874, 0.033), (0.883, 0.047), (0.866, 0.043)],
        "disgust": [(0.941, 0.023), (0.941, 0.032), (0.953, 0.019), (0.897, 0.034), (0.905, 0.023), (0.887, 0.048)],
        "fear": [(0.934, 0.033), (0.948, 0.016), (0.939, 0.027), (0.936, 0.003), (0.924, 0.025), (0.907, 0.032)],
        "happiness": [(0.968, 0.022), (0.978, 0.011), (0.971, 0.016), (0.957, 0.021), (0.966, 0.011), (0.964, 0.017)],
        "sadness": [(0.907, 0.031), (0.893, 0.021), (0.893, 0.037), (0.907, 0.027), (0.898, 0.033), (0.893, 0.033)],
        # The paper prints 0.0016 for K=128; almost certainly 0.016, kept as printed.
        "surprise": [(0.962, 0.014), (0.981, 0.009), (0.976, 0.0016), (0.981, 0.017), (0.974, 0.027), (0.974, 0.021)],
    },
}

# Tables 1 to 5: T-EMO hyperparameters (F filters, Q LSTM units, R FC1 neurons) per K.
HYPERPARAMETERS = {
    234: {"anger": (25, 31, 54), "disgust": (35, 50, 63), "fear": (39, 51, 34),
          "happiness": (50, 58, 63), "sadness": (24, 68, 54), "surprise": (30, 58, 63)},
    128: {"anger": (25, 31, 54), "disgust": (39, 30, 63), "fear": (39, 51, 34),
          "happiness": (39, 68, 72), "sadness": (39, 58, 74), "surprise": (40, 68, 73)},
    64: {"anger": (25, 31, 54), "disgust": (39, 30, 33), "fear": (39, 51, 34),
         "happiness": (16, 58, 52), "sadness": (39, 68, 64), "surprise": (40, 58, 63)},
    32: {"anger": (25, 31, 54), "disgust": (39, 50, 63), "fear": (39, 61, 64),
         "happiness": (16, 58, 52), "sadness": (39, 58, 74), "surprise": (30, 58, 63)},
    16: {"anger": (25, 31, 54), "disgust": (39, 50, 53), "fear": (24, 68, 64),
         "happiness": (16, 58, 52), "sadness": (39, 58, 64), "surprise": (40, 58, 63)},
}

# Section 4: SVM baselines quoted from Kumar et al. (2016), per-emotion accuracy.
SVM_ACCURACY = {
    "linear": {"anger": 0.85, "fear": 0.95, "disgust": 0.78, "happiness": 0.97, "sadness": 0.75, "surprise": 0.99},
    "rbf": {"anger": 0.84, "fear": 0.95, "disgust": 0.74, "happiness": 0.98, "sadness": 0.79, "surprise": 1.00},
}
