"""Reports: the open-choices tables (:mod:`~emolib.report.choices`, one function fed by each
stage's rows), HTML rendering (:mod:`~emolib.report.html`), the run folder's ``index.html``
(:mod:`~emolib.report.index`) and the archive of ``emolib report`` (:mod:`~emolib.report.archive`)."""
