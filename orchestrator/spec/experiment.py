"""The ``ScalingExperiment`` document: metadata and spec, where its state lives, its cells."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import PrivateAttr

from .artifacts import Located, locate, locate_file, preset_llm, preset_vision
from .base import Strict
from .cells import Cell, expand
from .document import Spec
from .grid import Metadata

API_VERSION = "vlmscale.dev/v1alpha1"
KIND = "ScalingExperiment"
STORAGE_ENV = "VLMSCALE_STORAGE"


class Experiment(Strict):
    apiVersion: Literal["vlmscale.dev/v1alpha1"]
    kind: Literal["ScalingExperiment"]
    metadata: Metadata
    spec: Spec
    _source_dir: Path | None = PrivateAttr(None)  # the spec file's folder, when loaded from a file

    def storage_root(self, override: str | None = None) -> str:
        """Where the experiment's directory lives: ``override`` (``--storage``), else
        ``$VLMSCALE_STORAGE``, else ``spec.storage.path`` — a relative one against the spec file's
        folder, so every command finds the same state from any working directory."""
        chosen = override or os.environ.get(STORAGE_ENV)
        if chosen:
            return chosen
        path = self.spec.storage.path
        if path.startswith("s3://") or self._source_dir is None or Path(path).expanduser().is_absolute():
            return path
        return str(self._source_dir / path)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def source_dir(self) -> Path | None:
        """The spec file's folder (what relative paths in it are relative to), if known."""
        return self._source_dir

    def locate_llm(self, ref: str) -> Located:
        return locate(ref, self._source_dir, preset_llm)

    def locate_vision(self, ref: str) -> Located:
        return locate(ref, self._source_dir, preset_vision)

    def locate_file(self, ref: str | None) -> str | None:
        return locate_file(ref, self._source_dir)

    def cells(self) -> list[Cell]:
        return expand(self)

    def digest(self) -> str:
        """A stable hash of the validated spec (same experiment ⇔ same digest)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
