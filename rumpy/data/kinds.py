"""Dataset kinds: the `type` of a [data.training_sets.*] / [data.eval_sets.*] table. Each kind
declares the tasks (or task families) it feeds and one config class per role, so a table is typed and checked like
any other section (unknown keys, types, did-you-mean). The code that reads a kind lives with its
task's data module (data/paired.py, data/arrays.py, data/images_with_targets.py)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config.schema import DatasetConfig, opt
from ..registry import Registry


@dataclass(frozen=True)
class DatasetKind:
    name: str
    tasks: tuple[str, ...]
    train_config: type
    eval_config: type
    doc: str


DATASET_KINDS: Registry[DatasetKind] = Registry("dataset type")


def kind(name: str, tasks: tuple[str, ...] | str, train_config: type, eval_config: type,
         doc: str) -> None:
    """Registers a dataset kind for `tasks` (task names or families, e.g. "image" for every
    image-to-image task)."""
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    DATASET_KINDS.register(name, tasks=tasks)(DatasetKind(name, tasks, train_config, eval_config,
                                                          doc))


# -- paired: super-resolution LR/HR folders ----------------------------------------------------
@dataclass
class PairedSet(DatasetConfig):
    lr: str = opt("", "folder of low-resolution images", path=True)
    hr: str = opt("", "folder of high-resolution images", path=True)
    degradation_metadata: str = opt("", "per-image degradation parameters for `metadata`: "
                                        "'on_site' (the LR folder's degradation_metadata.csv, as "
                                        "rumpy degrade writes it) or the CSV's path")
    metadata: list[str] = opt([], "degradation parameters handed to conditioned models (srmd, "
                                  "sftmd, qedsr, qrcan) with each image, normalised to [0, 1]: "
                                  "CSV columns, in full or by parameter name ('sigma_x', "
                                  "'jpeg_quality', ...)")
    ignore_degradation_location: bool = opt(
        False, "match `metadata` names to the CSV's columns without the pipeline step's "
               "position (the '1-' of '1-realesrganblur-sigma_x'; the original tool's key): a "
               "parameter means the same wherever a set's pipeline has its step, and checkpoints "
               "record it without the position")
    image_shortlist: str = opt("", "a text file naming the images to use, one per line (with or "
                                   "without extension); others in the folder are left out",
                               path=True)
    lr_interp: str = opt("", "the original tool's folder of pre-upscaled LR images: accepted "
                             "and not read (srcnn/vdsr upscale the LR input themselves, with "
                             "MATLAB's bicubic)")


@dataclass
class PairedTrainSet(PairedSet):
    crop: int = opt(0, "LR patch size in pixels (the HR patch is crop * scale); 0 = whole "
                       "images (then batch_size > 1 needs images of one size)", minimum=0)
    random_augment: bool = opt(True, "random flips and 90-degree rotations")
    use_hflip: bool = opt(True, "random_augment includes horizontal flips")
    use_vflip: bool = opt(True, "random_augment includes vertical flips")
    use_rotation: bool = opt(True, "random_augment includes 90-degree rotations")
    request_crops: int = opt(1, "patches cut from each image per visit, all in the same batch "
                                "(a batch holds batch_size x request_crops patches)", minimum=1,
                             maximum=1024)
    repeat: int = opt(1, "times each image is visited per epoch (for small sets)", minimum=1)
    degradations: dict = opt({}, "online degradation instead of an `lr` folder: a rumpy degrade "
                                 "pipeline (`pipeline`, `deg_configs`) applied to each HR patch "
                                 "on the fly, seeded by (seed, epoch, index)")


@dataclass
class PairedEvalSet(PairedSet):
    crop: int = opt(0, "centre LR crop in pixels to speed up validation; 0 = full images",
                    minimum=0)
    random_augment: bool = opt(False, "must stay false: validation is deterministic")
    val_example_indices: list[int] = opt([], "images (0-based, in name order) whose outputs are "
                                             "kept at every validation, as one strip per image "
                                             "over the epochs (result_outputs/examples/)")


kind("paired", ("sisr", "image"), PairedTrainSet, PairedEvalSet,
     "LR/HR image folders matched by name (DIV2K's 0001x2.png naming too)")


# -- arrays: feature or tensor regression ------------------------------------------------------
@dataclass
class ArraysSet(DatasetConfig):
    file: str = opt("", "a .npz with arrays `inputs` (N x F or N x C x H x W) and `targets` "
                        "(N x T or N), or a .csv", path=True)
    input_columns: list[str] = opt([], "CSV only: the columns that are inputs")
    target_columns: list[str] = opt([], "CSV only: the columns that are targets")
    target_names: list[str] = opt([], "npz only: a name per target column (default target, "
                                      "or target_0, target_1, ...)")


@dataclass
class ArraysTrainSet(ArraysSet):
    repeat: int = opt(1, "times each sample is visited per epoch", minimum=1)


kind("arrays", "regression", ArraysTrainSet, ArraysSet,
     "inputs and targets from a .npz (inputs, targets) or a .csv (input_columns, target_columns)")


# -- images_with_targets: image -> vector regression -------------------------------------------
@dataclass
class ImagesWithTargetsSet(DatasetConfig):
    images: str = opt("", "folder of images", path=True)
    targets: str = opt("", "CSV with a column `image` (file name) and one column per target",
                       path=True)
    target_columns: list[str] = opt([], "the CSV columns to predict; default: all but `image`")


@dataclass
class ImagesWithTargetsTrainSet(ImagesWithTargetsSet):
    crop: int = opt(0, "random square crop in pixels; 0 = whole images", minimum=0)
    random_augment: bool = opt(False, "random flips and 90-degree rotations (only when they "
                                      "leave the targets unchanged)")
    repeat: int = opt(1, "times each image is visited per epoch", minimum=1)


@dataclass
class ImagesWithTargetsEvalSet(ImagesWithTargetsSet):
    crop: int = opt(0, "centre crop in pixels; 0 = whole images", minimum=0)


kind("images_with_targets", "regression", ImagesWithTargetsTrainSet, ImagesWithTargetsEvalSet,
     "an image folder and a CSV of per-image targets (e.g. a degradation's parameters)")
