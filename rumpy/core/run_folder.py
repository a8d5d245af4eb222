"""The run folder: Results/<experiment>/ with config.toml, train.log, result_outputs/ and
saved_models/. It is created only after every check passed, and never over an existing one."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..config.load import config_text
from .declared import declare
from ..utils.atomic import atomic_write_text, dir_mode


# What training's callbacks write in result_outputs/ (the task adds its per-sample CSVs).
for _pattern in (r"summary\.csv", r"\w+_baseline\.csv", r"[\w.-]+\.png", r"epoch_\d+_samples",
                 r"examples"):
    declare("result_outputs", _pattern, "training's outputs")
# What the commands after training write inside a node.
EVAL_DIR = "eval"
EXPORT_DIR = "export"
declare("node", EVAL_DIR, "rumpy eval")
declare("node", EXPORT_DIR, "rumpy export-model")


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

    @property
    def steps(self) -> Path:
        return self.outputs / "steps.csv"

    def checkpoint(self, epoch: int) -> Path:
        return self.models / f"epoch_{epoch}.pt"

    def samples(self, epoch: int) -> Path:
        return self.outputs / f"epoch_{epoch}_samples"

    def ensure_absent(self, replacing: bool = False) -> None:
        if self.root.exists() and replacing:  # --overwrite_data set the old one aside already
            raise RunExistsError(
                f"{self.root} was made by another process after this one started "
                f"(--overwrite_data replaces what is there when a run starts); this run stopped "
                f"and touched nothing of it: let that run end, then continue or replace it")
        if self.root.exists():
            raise RunExistsError(
                f"{self.root} already exists; rumpy never overwrites a run silently. Continue it "
                f"with --continue_from_epoch last, fork it with --continue_from_epoch N "
                f"--new_branch, replace it with --overwrite_data, or pick another --experiment_name")

    def create(self, cfg: RunConfig) -> None:
        """Built under a temporary name and renamed into place: the folder appears whole (with
        its config.toml) or not at all, whatever interrupts it; of two racing runs one gets it."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        replacing = bool(cfg.training.overwrite_data)
        self.ensure_absent(replacing)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.root.name}.", suffix=".creating",
                                    dir=self.root.parent))
        try:
            os.chmod(tmp, dir_mode())
            (tmp / self.outputs.name).mkdir()
            (tmp / self.models.name).mkdir()
            atomic_write_text(tmp / self.config.name, config_text(cfg))
            try:
                tmp.rename(self.root)
            except OSError:
                self.ensure_absent(replacing)  # another run took the name first
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
