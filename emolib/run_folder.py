"""The run folder contract (DESIGN.md): one folder per run; stages talk only through its files.

    runs/<name>/params.yaml, manifest.json, NN_stage.ipynb/.html,
    data/, results/, attributions/, models/, figures/
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emolib.config import Params, load_params
from emolib.errors import ParamsError
from emolib import io


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder. Folders are created on first use of :meth:`ensure`."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def params_path(self) -> Path:
        return self.root / "params.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def attributions(self) -> Path:
        return self.root / "attributions"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def cache(self) -> Path:
        """Per-item caches that make long stages resumable (extraction, per-model results)."""
        return self.root / "cache"

    @property
    def landmarks(self) -> Path:
        return self.data / "landmarks.npz"

    @property
    def extraction_report(self) -> Path:
        return self.data / "extraction_report.csv"

    def ensure(self) -> "RunFolder":
        for folder in (self.root, self.data, self.results, self.attributions, self.models,
                       self.figures, self.cache):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def open_run(run_dir: str | Path, params_file: str | Path | None = None) -> tuple[RunFolder, Params]:
    """Open (or start) a run folder and return it with its validated parameters.

    A run folder written by ``emolib run`` holds the resolved ``params.yaml``, which wins. A
    notebook opened by hand on a new folder passes ``params_file``; its resolved form is then
    written into the folder so that later stages read the same values.

    Raises:
        ParamsError: neither the folder's params.yaml nor ``params_file`` exists or validates.
    """
    run = RunFolder(Path(run_dir))
    if run.params_path.is_file():
        params = load_params(run.params_path)
    elif params_file:
        params = load_params(params_file)
        run.ensure()
        io.write_text(run.params_path, params.to_yaml())
    else:
        raise ParamsError(f"{run.params_path}: no params.yaml in the run folder and no params_file given")
    run.ensure()
    return run, params
