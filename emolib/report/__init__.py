"""Reports: the open-choices tables (:mod:`~emolib.report.choices`, one function fed by each
stage's rows) and HTML rendering (:mod:`~emolib.report.html`)."""
