"""The experiment spec: a Kubernetes-style ``ScalingExperiment`` document, validated with pydantic.

Pure and fast: imports neither ray, torch, mlflow nor kubernetes. Unknown fields are refused
everywhere, every grid point is checked against the compressor rules before anything runs, and
each grid point gets a deterministic, human-readable cell key. One module per concern:

    base        strict models, checks on names that reach a shell, pod, label or path
    grid        metadata and the grid (LLMs × V × compressors × tasks × seeds, or points)
    workload    vision tower, data, training (and its LR calibration), the fault drill
    platform    resources, tracking, storage, retries, Kubernetes
    study       fit, imports, rounds, the inference profile
    document    the spec section and its cross-block checks
    experiment  the document, where its state lives
    cells       grid points → cells with their workload configs
    load        YAML → Experiment, errors in one line; the JSON Schema
    limits      sizes a spec may ask for
"""

from ..errors import SpecError
from .cells import Cell, cell_key, expand, make_cell, slug
from .document import Spec
from .experiment import API_VERSION, KIND, STORAGE_ENV, Experiment
from .grid import Grid, GridPoint, Metadata
from .load import json_schema, load, parse
from .platform import CELL_SLOT, PLATFORM_CONFIG, Failure, Kubernetes, Resources, Storage, Tracking
from .study import Fit, Import, Profile, Rounds
from .workload import Benchmark, Data, Evaluation, FaultInjection, LRCalibration, Training, Vision, VisionPretraining

__all__ = ["API_VERSION", "CELL_SLOT", "KIND", "PLATFORM_CONFIG", "STORAGE_ENV", "Benchmark", "Cell", "Data",
           "Evaluation", "Experiment",
           "Failure", "FaultInjection", "Fit", "Grid", "GridPoint", "Import", "Kubernetes", "LRCalibration", "Metadata",
           "Profile", "Resources", "Rounds", "Spec", "SpecError", "Storage", "Tracking", "Training", "Vision",
           "VisionPretraining", "cell_key", "expand", "json_schema", "load", "make_cell", "parse", "slug"]
