"""Parameters: YAML files validated into typed settings.

A misspelled or unknown key, a wrong type or an impossible value is refused before anything runs,
with the file, the key and what was expected. Every section forbids unknown keys.

Usage::

    params = load_params("params/demo.yaml", overrides=["train.epochs=5"])
    params.data.source, params.frames, params.ig.steps
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from emolib.errors import ParamsError
from emolib.io import content_key
from emolib.vocab import (
    EMOTIONS,
    N_LANDMARKS,
    STAGES,
    ClassWeight,
    DataSource,
    ExecutionBackend,
    FcActivation,
    IgEngine,
    IgInputs,
    IgRule,
    IgTypical,
    MissingFaceFill,
    Normalize,
    Reference,
    Split,
    Variant,
)


def _not_a_boolean(value: Any) -> Any:
    """YAML's ``true`` is not the integer 1 here: ``seeds: [true]`` is a mistake, not seed 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got the boolean {str(value).lower()}")
    return value


# An integer parameter: as pydantic reads ints, but a boolean is refused.
Int = Annotated[int, BeforeValidator(_not_a_boolean)]


def _read_by(first: str, *, only: Optional[tuple[str, ...]] = None) -> dict:
    """Field metadata: the stages whose results a top-level section changes. By default the stage
    that first reads it and every later one (they all build on its outputs); ``only`` names them
    when the section's effect does not flow downstream (the SVMs: stage 02 trains them, stage 05
    reports them, nothing in between reads them; ``execution``: none)."""
    stages = only if only is not None else STAGES[STAGES.index(first):]
    return {"read_by": list(stages)}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DemoSettings(_Section):
    """The embedded demo dataset (see DESIGN.md, "Embedded demo dataset")."""

    subjects: Int = Field(12, ge=3, le=500, description="number of synthetic subjects")
    frames_per_sequence: Int = Field(12, ge=2, le=200, description="frames written per sequence")
    contempt_sequences: Int = Field(2, ge=0, description="contempt sequences (left out, counted)")
    image_size: Int = Field(360, ge=160, le=1024, description="side of the square frames written")
    seed: Int = Field(0, ge=0, description="generator seed (deterministic output)")


class MissingFaceSettings(_Section):
    """What to do with frames where MediaPipe finds no face."""

    fill: MissingFaceFill = "neighbours"
    max_missing_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="drop a sequence when more than this fraction has no face"
    )


class DataSettings(_Section):
    source: DataSource = "demo"
    path: Optional[str] = Field(
        None,
        description="ckplus: the folder holding cohn-kanade-images/ and Emotion/; videos: the folder "
        "holding labels.csv; landmarks: a landmark file (.npz with 468 or 478 landmarks, or a .csv with one row "
        "per frame; see emolib/data/landmark_files.py); demo: where to write the generated "
        "dataset (default: <run>/data/demo_source)",
    )
    flip: bool = Field(True, description="flip augmentation (mirror horizontally) doubles the data")
    normalize: Normalize = Field(
        "standardize",
        description="standardize: each feature (coordinate x landmark) to mean 0, std 1; global: "
        "per-feature means, one standard deviation pooled over all features (keeps their relative "
        "sizes); none: raw coordinates")
    reference: Reference = Field(
        "none",
        description="first_frame: subtract each landmark's position in the sequence's first (neutral) "
        "frame before scaling, so that the model sees the expression's movement rather than the face's "
        "shape; none: the paper's absolute coordinates",
    )
    crop_size: Int = Field(300, ge=64, le=1024, description="face crop side (paper: 300 x 300 grey)")
    workers: Int = Field(2, ge=1, le=64, description="extraction worker processes")
    min_detection_confidence: float = Field(0.5, gt=0.0, le=1.0)
    missing_face: MissingFaceSettings = MissingFaceSettings()
    demo: DemoSettings = DemoSettings()


class ModelSettings(_Section):
    """Architecture: Conv2D -> BatchNorm -> Flatten -> LSTM -> Dropout -> FC1 -> Dense(2)."""

    filters: Int = Field(16, ge=1, description="F, convolutional filters")
    lstm_units: Int = Field(32, ge=1, description="Q, LSTM units")
    fc_units: Int = Field(32, ge=1, description="R, FC1 neurons")
    kernel_size: tuple[Int, Int] = Field((2, 3), description="conv kernel (coordinates, landmarks)")
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    fc_activation: FcActivation = "relu"

    @field_validator("kernel_size")
    @classmethod
    def _kernel_ok(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] not in (1, 2) or value[1] < 1:
            raise ValueError("kernel_size must be [1 or 2, >= 1] (coordinates x landmarks)")
        return value


class TrainSettings(_Section):
    epochs: Int = Field(100, ge=1)
    batch_size: Int = Field(16, ge=1)
    learning_rate: float = Field(1e-4, gt=0.0)
    patience: Int = Field(15, ge=1, description="early stopping patience (epochs) on validation loss")
    class_weight: ClassWeight = "balanced"
    threads: Int = Field(0, ge=0, description="TensorFlow intra-op threads (0: TensorFlow's default)")
    bank_size: Union[Literal["auto"], Annotated[Int, Field(ge=1)]] = Field(
        "auto", description="units trained together in one bank (auto: from a memory budget; see emolib.training.bank)")


class GridSettings(_Section):
    """Grid search over F, Q, R for T-EMO on validation data (R-EMO reuses the choice)."""

    enabled: bool = False
    filters: list[Int] = Field(default_factory=lambda: [16, 25, 39])
    lstm_units: list[Int] = Field(default_factory=lambda: [31, 58])
    fc_units: list[Int] = Field(default_factory=lambda: [34, 63])
    seed: Int = Field(0, ge=0, description="seed of the partition the grid search validates on")

    @field_validator("filters", "lstm_units", "fc_units")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if not values:
            raise ValueError("a grid axis needs at least one value")
        if any(v < 1 for v in values):
            raise ValueError(f"grid values must be >= 1, got {values}")
        return values


class SvmSettings(_Section):
    enabled: bool = True
    c: float = Field(1.0, gt=0.0)


class IgSettings(_Section):
    steps: Int = Field(50, ge=1, description="m, interpolation steps of equation (2)")
    rule: IgRule = "riemann_right"
    inputs: IgInputs = "positives"
    typical: IgTypical = Field(
        "most_confident",
        description="each emotion's typical video, IG's baseline: most_confident (the training sample its own "
                    "model is most sure of), medoid (the training sample closest to their mean input) or "
                    "centroid (the mean input of its training samples: not a real video)")
    max_samples: Optional[Int] = Field(None, ge=1, description="cap on explained samples per emotion")
    batch_size: Int = Field(512, ge=1, description="interpolated samples per gradient chunk")
    engine: IgEngine = Field(
        "auto", description="IG engine: structured (exact, fast, emolib's Conv2D+LSTM models), generic, auto")
    seed: Optional[Int] = Field(None, ge=0, description="which seed's models to explain (default: first)")


class RoarSettings(_Section):
    """ROAR (Hooker et al. 2019): retrain on every landmark but the ranking's top K, against every
    landmark but K random ones (the control). A faithful ranking loses more accuracy."""

    k: list[Int] = Field(default_factory=lambda: [64], description="how many landmarks are removed "
                         "(each a retraining of every variant below, emotion and seed, twice); [] turns ROAR off")
    variants: list[Variant] = Field(default_factory=lambda: ["t-emo"], description="the variants retrained")

    @field_validator("k")
    @classmethod
    def _k_ok(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if not 1 <= v < N_LANDMARKS]
        if bad:
            raise ValueError(f"every removed K must lie in 1..{N_LANDMARKS - 1}, got {bad}")
        return sorted(set(values), reverse=True)

    @field_validator("variants")
    @classmethod
    def _variants_ok(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError(f"variants repeat: {values}")
        return values


class PruningSettings(_Section):
    k: list[Int] = Field(default_factory=lambda: [234, 128, 64, 32, 16])
    random_control: bool = True
    grid_search: bool = False
    roar: RoarSettings = RoarSettings()

    @field_validator("k")
    @classmethod
    def _k_ok(cls, values: list[int]) -> list[int]:
        if not values:
            raise ValueError("at least one K is needed (the pruned sizes to retrain with)")
        bad = [v for v in values if not 1 <= v < N_LANDMARKS]
        if bad:
            raise ValueError(f"every K must lie in 1..{N_LANDMARKS - 1} (K = {N_LANDMARKS} is stage 02's "
                             f"full model), got {bad}")
        return sorted(set(values), reverse=True)


class DeletionSettings(_Section):
    """Deletion and insertion curves without retraining (:mod:`emolib.checks.perturbation`): each
    seed's all-landmark model on its own test positives of each emotion, against the typical
    baselines of the other emotions, landmarks replaced in the ranking's order and in random ones."""

    seeds: Optional[Int] = Field(None, ge=1, description="how many of the run's seeds (the first ones) are "
                                 "measured; default: all (the curves are paired over seeds)")
    samples: Int = Field(8, ge=1, description="test positives per emotion and seed (a seeded choice when more)")
    points: Int = Field(16, ge=1, description="points along each curve after its start")
    random_orders: Int = Field(4, ge=1, description="random landmark orders per emotion and seed (the control)")


class RandomisationSettings(_Section):
    """The model-parameter randomisation check (:mod:`emolib.checks.randomisation`)."""

    seeds: Int = Field(3, ge=1, description="how many of the run's seeds (the first ones) are checked")
    samples: Int = Field(8, ge=1, description="training positives explained per emotion and seed")


class StabilitySettings(_Section):
    """How far rankings agree across seeds, typical-baseline strategies and IG steps."""

    seeds: Int = Field(3, ge=1, description="how many of the run's seeds (the first ones) are ranked and "
                       "compared pairwise")
    samples: Int = Field(8, ge=2, description="training positives explained per emotion (and per seed)")
    typical: list[IgTypical] = Field(default_factory=lambda: ["most_confident", "medoid", "centroid"],
                                     description="the typical-baseline strategies compared pairwise")
    steps: list[Int] = Field(default_factory=lambda: [8, 128], description="IG steps compared with ig.steps")
    bootstrap: Int = Field(200, ge=10, description="bootstrap replicates over the explained samples")


class ChecksSettings(_Section):
    """Does the explanation hold up? (stage 03 computes, stage 05 reports; ROAR is ``pruning.roar``)."""

    enabled: bool = True
    top_k: Int = Field(32, ge=1, le=N_LANDMARKS, description="the K of every top-K overlap")
    deletion: DeletionSettings = DeletionSettings()
    randomisation: RandomisationSettings = RandomisationSettings()
    stability: StabilitySettings = StabilitySettings()


class ReportSettings(_Section):
    top_k_figure: list[Int] = Field(
        default_factory=lambda: [468, 234, 128, 64, 32, 16], description="K values in Figure 3"
    )

    @field_validator("top_k_figure")
    @classmethod
    def _top_k_ok(cls, values: list[int]) -> list[int]:
        if not values:
            raise ValueError("Figure 3 needs at least one K")
        bad = [v for v in values if not 1 <= v <= N_LANDMARKS]
        if bad:
            raise ValueError(f"every K must lie in 1..{N_LANDMARKS}, got {bad}")
        return values


class ExecutionSettings(_Section):
    """Where the training banks (stages 02 and 04, the grid search) run: never what they compute.

    No stage reads this section: changing it redoes nothing and changes no unit's key, and the
    same seeds give the same models on every backend (``emolib.execution``).
    """

    backend: ExecutionBackend = Field(
        "local", description="local: in the notebook's process; ray: each bank is a Ray task (pip install emolib[ray])")
    address: Optional[str] = Field(
        None, description="ray only: the cluster to join: null (start a Ray on this machine), auto (the "
                          "cluster `ray start` runs on this machine), host:port (its head's GCS) or ray://host:port "
                          "(Ray Client)")
    num_cpus: float = Field(1.0, gt=0.0, description="CPUs each Ray task reserves")
    num_gpus: float = Field(0.0, ge=0.0, description="GPUs each Ray task reserves (fractions share a GPU)")
    memory: Optional[Int] = Field(None, ge=1, description="bytes of memory each Ray task reserves (null: none)")
    max_retries: Int = Field(3, ge=0, description="times Ray reruns a task whose worker died")

    @field_validator("address")
    @classmethod
    def _address_ok(cls, value: Optional[str]) -> Optional[str]:
        if value is None or value == "auto":
            return value
        rest = value[len("ray://"):] if value.startswith("ray://") else value
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or "/" in rest:
            raise ValueError("expected null, auto, host:port or ray://host:port (port 1..65535)")
        return value


class Params(_Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$", json_schema_extra=_read_by("05_results"))
    data: DataSettings = Field(default_factory=DataSettings, json_schema_extra=_read_by("01_data_prep"))
    frames: Int = Field(10, ge=2, le=500, description="P, every sequence resampled to this many frames",
                        json_schema_extra=_read_by("01_data_prep"))
    emotions: list[str] = Field(default_factory=lambda: list(EMOTIONS), json_schema_extra=_read_by("01_data_prep"))
    seeds: list[Int] = Field(default_factory=lambda: [0, 1, 2], json_schema_extra=_read_by("02_training"))
    split: Split = Field("subject", json_schema_extra=_read_by("02_training"))
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, json_schema_extra=_read_by("02_training"))
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, json_schema_extra=_read_by("02_training"))
    model: ModelSettings = Field(default_factory=ModelSettings, json_schema_extra=_read_by("02_training"))
    train: TrainSettings = Field(default_factory=TrainSettings, json_schema_extra=_read_by("02_training"))
    grid: GridSettings = Field(default_factory=GridSettings, json_schema_extra=_read_by("02_training"))
    svm: SvmSettings = Field(default_factory=SvmSettings,
                             json_schema_extra=_read_by("02_training", only=("02_training", "05_results")))
    ig: IgSettings = Field(default_factory=IgSettings, json_schema_extra=_read_by("03_global_ig"))
    pruning: PruningSettings = Field(default_factory=PruningSettings, json_schema_extra=_read_by("04_pruning"))
    # Read by stage 03 (which measures) and 05 (which reports) only: stage 04 does not depend on
    # them, so changing them never retrains a pruned model.
    checks: ChecksSettings = Field(default_factory=ChecksSettings,
                                   json_schema_extra=_read_by("03_global_ig", only=("03_global_ig", "05_results")))
    report: ReportSettings = Field(default_factory=ReportSettings, json_schema_extra=_read_by("05_results"))
    # Read by no stage: where the work runs never changes its results.
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings,
                                         json_schema_extra=_read_by("02_training", only=()))

    @field_validator("emotions")
    @classmethod
    def _emotions_ok(cls, values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in EMOTIONS]
        if unknown:
            raise ValueError(f"unknown emotion(s) {unknown}; expected a subset of {list(EMOTIONS)}")
        if len(set(values)) < 2:
            raise ValueError("at least two distinct emotions are needed for one-vs-rest models")
        return [e for e in EMOTIONS if e in values]

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, values: list[int]) -> list[int]:
        if not values:
            raise ValueError("at least one seed is needed")
        if len(set(values)) != len(values):
            raise ValueError(f"seeds repeat: {values}")
        negative = [v for v in values if v < 0]
        if negative:
            raise ValueError(f"seeds must be non-negative integers, got {negative}")
        return values

    @model_validator(mode="after")
    def _cross_checks(self) -> "Params":
        if self.data.source in ("ckplus", "videos", "landmarks") and not self.data.path:
            raise ValueError(f"data.path is required when data.source is {self.data.source!r}")
        if self.ig.seed is not None and self.ig.seed not in self.seeds:
            raise ValueError(f"ig.seed {self.ig.seed} is not one of seeds {self.seeds}")
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("test_fraction + val_fraction must leave at least 10% for training")
        return self

    # ---- derived values -------------------------------------------------------------------
    @property
    def ig_seed(self) -> int:
        """The seed whose 468-landmark models global IG explains."""
        return self.seeds[0] if self.ig.seed is None else self.ig.seed

    def fingerprint(self, *sections: str) -> str:
        """A short stable hash of the named top-level sections (all when none are named)."""
        dumped = self.model_dump(mode="json")
        return content_key({k: dumped[k] for k in (sections or dumped.keys())})

    def sections_of(self, stage: str) -> dict[str, Any]:
        """The values of the sections ``stage`` depends on (:data:`STAGE_SECTIONS`), as JSON."""
        dumped = self.model_dump(mode="json")
        return {k: dumped[k] for k in STAGE_SECTIONS[stage]}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# Which top-level sections each stage depends on (its own and those of the stages it builds on):
# a stage is redone when any of them change. Derived from each section's ``read_by`` metadata.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    stage: tuple(name for name, field in Params.model_fields.items()
                 if stage in (field.json_schema_extra or {}).get("read_by", STAGES))
    for stage in STAGES
}


def _format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid parameters"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = _parent_model(e["loc"])
            expected = ", ".join(parent.model_fields) if parent else "see params/demo.yaml"
            lines.append(f"  {key}: unknown key (expected one of: {expected})")
        else:
            got = e.get("input")
            got_txt = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg']}{got_txt}")
    return "\n".join(lines)


def _parent_model(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def _apply_override(raw: dict, override: str, source: str) -> None:
    if "=" not in override:
        raise ParamsError(f"{source}: --set {override!r}: expected key=value (e.g. train.epochs=5)")
    key, value_txt = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ParamsError(f"{source}: --set {override!r}: empty key")
    try:
        value = yaml.safe_load(value_txt)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{source}: --set {override!r}: value is not valid YAML ({exc})") from None
    try:
        set_dotted(raw, parts, value)
    except ParamsError as exc:
        raise ParamsError(f"{source}: --set {override!r}: {exc}") from None


def set_dotted(raw: dict, parts: list[str], value: Any) -> None:
    """Set ``raw[parts[0]][parts[1]]... = value``, creating missing sections.

    Raises:
        ParamsError: a part on the way names a value rather than a section.
    """
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamsError(f"{part} is not a section")
        node = child
    node[parts[-1]] = value


def parse_params(raw: Any, source: str = "<params>", overrides: list[str] | None = None) -> Params:
    """Validate an already-parsed mapping (plus ``key=value`` overrides) into :class:`Params`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of parameters at the top level, got {type(raw).__name__}")
    raw = json.loads(json.dumps(raw))  # deep copy, and refuse non-JSON-able YAML oddities early
    for override in overrides or []:
        _apply_override(raw, override, source)
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_validation_error(source, err)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML lets the last one win
    silently: ``epochs: 5`` early in a file, ``epochs: 100`` later, and the 5 is lost)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path, overrides: list[str] | None = None) -> Params:
    """Read and validate a parameters YAML file.

    Raises:
        ParamsError: the file is missing, not YAML, or holds an unknown key, a wrong type or an
            impossible value. The message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameters file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not a text file") from None
    return parse_params(raw, str(path), overrides)
