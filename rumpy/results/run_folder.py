"""The run folder: Results/<experiment>/ with config.toml, train.log, result_outputs/ and
saved_models/. It is created only after every check passed, and never over an existing one."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomli_w

from ..config import RunConfig
from ..config.load import to_toml_dict
from ..utils.atomic import atomic_write_text


class RunExistsError(FileExistsError):
    pass


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def outputs(self) -> Path:
        return self.root / "result_outputs"

    @property
    def models(self) -> Path:
        return self.root / "saved_models"

    @property
    def summary(self) -> Path:
        return self.outputs / "summary.csv"

    def checkpoint(self, epoch: int) -> Path:
        return self.models / f"epoch_{epoch}.pt"

    def samples(self, epoch: int) -> Path:
        return self.outputs / f"epoch_{epoch}_samples"

    def ensure_absent(self) -> None:
        if self.root.exists():
            raise RunExistsError(
                f"{self.root} already exists; rumpy never overwrites a run silently. Continue it "
                f"with --continue_from_epoch last, fork it with --continue_from_epoch N "
                f"--new_branch, replace it with --overwrite_data, or pick another --experiment_name")

    def create(self, cfg: RunConfig) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.root.mkdir()  # atomic: of two racing runs, one gets the folder
        except FileExistsError:
            self.ensure_absent()
            raise
        self.outputs.mkdir()
        self.models.mkdir()
        atomic_write_text(self.config, tomli_w.dumps(to_toml_dict(cfg)))
