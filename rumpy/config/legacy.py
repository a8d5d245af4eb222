"""The original tool's keys (RUMpy's TOML schema) that rumpy reads with their original meaning but
does not keep under that name. Each is translated into rumpy's own key on the composed table,
before it is typed, so a shipped RUMpy config trains unchanged and every later check (types,
ranges, the continue rules) sees one vocabulary. Keys the original schema shares with rumpy's
(seed, metrics, use_hflip, request_crops, ...) are ordinary fields of the config classes.

Keys that only configure a feature rumpy does not have are accepted with one warning when the
config does not use that feature, and refused in the same report when it does.

This table is the one place that lists them (docs/config.md, "The original tool's keys")."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Face-recognition metrics of the original (they need a VGG-Face gallery and weights).
FACE_METRICS = ("VGG_FR_Rank", "face_PSNR", "true_face_PSNR")


@dataclass
class Translation:
    """What the translation did: problems (key path, message) join the config's report; notes
    are logged once each when the config is used."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # rumpy key -> the original key


def _given_by_user(origin: str) -> bool:
    """A CLI flag or key=value override wins over a key of any file."""
    return origin.startswith("--") or "=" in origin


def _move(table: dict, section: str, old: str, new: str, out: Translation,
          origins: dict) -> None:
    """section.old -> section.new (unless the user set section.new on the command line); both
    in files with different values is a problem."""
    sec = table[section]
    given = sec.pop(old)
    if new in sec and sec[new] != given:
        origin = origins.get(f"{section}.{new}", "")
        if _given_by_user(origin):
            return
        out.problems.append((f"{section}.{old}", f"{old} = {given!r} (the original tool's name "
                                                 f"for {new}) contradicts {new} = {sec[new]!r}: "
                                                 f"give one of them"))
        return
    sec[new] = given
    out.renamed[f"{section}.{new}"] = f"{section}.{old}"


def _training(table: dict, out: Translation, origins: dict) -> None:
    t = table.get("training")
    if not isinstance(t, dict):
        return
    if "epoch_cutoff" in t:  # the last epoch to train, counting earlier ones: num_epochs here
        _move(table, "training", "epoch_cutoff", "num_epochs", out, origins=origins)
    if t.get("gpu") == "multi":
        t["gpu"] = "multiple"
    if "model_cleanup_frequency" in t:
        # The original wiped every model but the best and the last every N epochs; retention
        # does the same after every epoch (fork points are kept too).
        every = t.pop("model_cleanup_frequency")
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            out.problems.append(("training.model_cleanup_frequency",
                                 f"expected an integer >= 1, got {every!r}"))
        else:
            t.setdefault("keep_every_n_epochs", 0)
            t.setdefault("keep_last_n", 1)
            out.notes.append("training.model_cleanup_frequency: kept are the best and the last "
                             "epoch (and fork points), pruned after every epoch")
    if "cleanup_metric" in t:
        _move(table, "training", "cleanup_metric", "best_load_metric", out, origins=origins)
    for key in ("id_source", "vgg_gallery"):
        if key not in t:
            continue
        t.pop(key)
        used = [m for m in t.get("metrics") or [] if m in FACE_METRICS]
        if used:
            out.problems.append(("training.metrics", f"{used[0]} (face recognition) is not "
                                                     f"supported by rumpy: it needs a VGG-Face "
                                                     f"model and gallery; remove it"))
        else:
            out.notes.append(f"training.{key}: configures face-recognition metrics, which rumpy "
                             f"does not have; ignored (no metric here uses it)")
    if "run_lpips_on_gpu" in t:
        t.pop("run_lpips_on_gpu")
        out.notes.append("training.run_lpips_on_gpu: ignored; LPIPS runs on the training device")
    if "full_loss_logging" in t:
        t.pop("full_loss_logging")
        out.notes.append("training.full_loss_logging: ignored; every loss term is logged")
    if "max_im_val" in t:
        value = t.pop("max_im_val")
        if value != 1:
            out.problems.append(("training.max_im_val", f"expected 1 (images are read as values "
                                                        f"in [0, 1]), got {value!r}"))


# Per model: the original's parameter name -> rumpy's, and parameters with the one value rumpy
# implements (the original's other values select variants rumpy does not have).
_MODEL_RENAMES = {"srmd": {"nc": "num_features", "nb": "num_layers"},
                  "sftmd": {}, "qrcan": {}, "qedsr": {}, "dan": {}}
_MODEL_FIXED = {
    "qrcan": {"style": ("standard", "meta-attention as in Aquilina et al. 2021"),
              "include_q_layer": (True, "false is plain RCAN: use name = 'rcan'")},
    "qedsr": {"include_q_layer": (True, "false is plain EDSR: use name = 'edsr'")},
    "dan": {"style": ("standard", "the QRCAN restorer of the original's DAN configs"),
            "include_q_layer": (True, "the restorer is conditioned on the estimated code")},
    "contrastiveblindqrcan": {
        "style": ("standard", "the QRCAN of the original's rcan-supmoco config"),
        "include_q_layer": (True, "the encoder's embedding reaches the network through them"),
        "encoder_type": ("default", "DASR's encoder, as the contrastive task trains it"),
        "encoder_freeze_mode": ("all", "the pre-trained encoder is frozen"),
        "encoder_train_eval": ("eval", "the frozen encoder keeps its batch-norm statistics"),
        "encoder_output_size": (256, "the encoder's embedding width"),
        "combined_loss_mode": (None, "training the encoder with the SR network is not ported"),
        "auxiliary_encoder_weights": (None, "a second encoder is not ported"),
        "reducer_layer_sizes": (None, "the embedding reducer is not ported"),
        "include_sft_layer": (False, "SFT conditioning is not ported"),
        "srmd_mode": (False, "SRMD-style conditioning is not ported"),
        "staggered_encoding": (False, "needs auxiliary encoders"),
        "crop_count": (None, "used by combined_loss_mode only"),
    },
}


def _model(table: dict, out: Translation) -> None:
    model = table.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("internal_params"), dict):
        return
    params = model["internal_params"]
    name = str(model.get("name", "")).lower()
    where = "model.internal_params"
    for old, new in _MODEL_RENAMES.get(name, {}).items():
        if old in params:
            if new in params:
                out.problems.append((f"{where}.{old}", f"{old} (the original tool's name for "
                                                       f"{new}) and {new} are both given"))
                continue
            params[new] = params.pop(old)
            out.renamed[f"{where}.{new}"] = f"{where}.{old}"
    for key, (value, why) in _MODEL_FIXED.get(name, {}).items():
        if key in params:
            given = params.pop(key)
            if given != value:
                out.problems.append((f"{where}.{key}", f"only {value!r} is supported ({why}), "
                                                       f"got {given!r}"))
    if "in_nc" in params:  # input channels: rumpy's SR models read RGB
        given = params.pop("in_nc")
        if given != 3:
            out.problems.append((f"{where}.in_nc", f"expected 3 (RGB input), got {given!r}"))
    if "ignore_degradation_location" in params:
        # The original stripped positions from the model's metadata names as from the sets'
        # columns: here the sets do it, so the model's setting is every set's unless a set
        # says otherwise.
        ignore = params.pop("ignore_degradation_location")
        if not isinstance(ignore, bool):
            out.problems.append((f"{where}.ignore_degradation_location",
                                 f"expected true or false, got {ignore!r}"))
        else:
            for ds in _data_sets(table):
                ds.setdefault("ignore_degradation_location", ignore)
    if "metadata" in params:
        # The original model was told its metadata again; here it comes from the data sets,
        # which must say the same. A set with a metadata CSV and no list read every column
        # in the original; the model's list is what it used of them.
        given = params.pop("metadata")
        for ds in _data_sets(table):
            if ds.get("degradation_metadata") and "metadata" not in ds:
                ds["metadata"] = given
        sets = (table.get("data") or {}).get("training_sets") or {}
        wanted = [s.get("metadata") for s in sets.values() if isinstance(s, dict)]
        if wanted and any(w != given for w in wanted):
            out.problems.append((f"{where}.metadata", f"{given!r} differs from the training sets' "
                                                      f"metadata {wanted[0]!r}; the model takes "
                                                      f"what the data sets deliver"))
    sched = params.get("scheduler_params")
    if isinstance(sched, dict) and "scheduler" in sched:  # the original repeated it there
        inner = sched.pop("scheduler")
        if inner != params.get("scheduler"):
            out.problems.append((f"{where}.scheduler_params.scheduler",
                                 f"{inner!r} differs from scheduler = "
                                 f"{params.get('scheduler')!r}: give one"))
    if params.get("scheduler") == "cosine_annealing_warm_restarts" and isinstance(sched, dict):
        # The original stepped it once per batch: restart_period counts batches.
        for old, new in (("restart_period", "T_0"), ("t_mult", "T_mult"), ("lr_min", "eta_min")):
            if old in sched:
                if new in sched:
                    out.problems.append((f"{where}.scheduler_params.{old}",
                                         f"{old} (the original tool's name for {new}) and {new} "
                                         f"are both given"))
                    continue
                sched[new] = sched.pop(old)
                out.renamed[f"{where}.scheduler_params.{new}"] = f"{where}.scheduler_params.{old}"
                if old == "restart_period":
                    sched.setdefault("interval", "batch")
    if params.get("perceptual"):
        out.problems.append((f"{where}.perceptual", "a perceptual (VGG) loss is not supported: "
                                                    "it needs pretrained VGG weights; remove it"))
    params.pop("perceptual", None)


def _data_sets(table: dict) -> list[dict]:
    data = table.get("data") if isinstance(table.get("data"), dict) else {}
    return [ds for section in ("training_sets", "eval_sets")
            for ds in (data.get(section) or {}).values() if isinstance(ds, dict)]


def _data(table: dict, out: Translation) -> None:
    data = table.get("data")
    if not isinstance(data, dict):
        return
    for section in ("training_sets", "eval_sets"):
        for name, ds in (data.get(section) or {}).items():
            if not isinstance(ds, dict):
                continue
            if "qpi_values" in ds:  # the original's older name
                where = f"data.{section}.{name}"
                if "degradation_metadata" in ds:
                    out.problems.append((f"{where}.qpi_values", "qpi_values (the original tool's "
                                                                 "older name for "
                                                                 "degradation_metadata) and "
                                                                 "degradation_metadata are both "
                                                                 "given"))
                else:
                    ds["degradation_metadata"] = ds.pop("qpi_values")


# The original's contrastive encoders: their configs have no `task`; here task 'contrastive'
# trains them (tasks/contrastive.py).
CONTRASTIVE_MODELS = ("supmoco", "mococontrastive", "weakcon")
# their handlers' options rumpy does not have, and why
_CONTRASTIVE_REFUSED = {
    "dropdown": "the dropdown MLP (a smaller vector regressed on the metadata) is not ported",
    "include_direct_loss": "the dropdown MLP's direct metadata loss is not ported",
    "direct_loss_only": "the dropdown MLP's direct metadata loss is not ported",
    "dropdown_metadata_target": "the dropdown MLP is not ported",
    "use_noise_injection": "noise injection into the weights is not ported",
    "override_queue": "a fork that should restart the queue: start a new run instead",
}


def _contrastive(table: dict, out: Translation) -> None:
    """The original's contrastive-encoder configs, and its online pipeline
    ([data.online_pipeline] + a set's online_degradations = true: the set's `degradations`)."""
    model = table.get("model") if isinstance(table.get("model"), dict) else {}
    data = table.get("data") if isinstance(table.get("data"), dict) else {}
    name = str(model.get("name", "")).lower()
    if "task_type" in data:
        data.pop("task_type")
        out.notes.append("data.task_type: ignored; the task follows from the model (a "
                         "contrastive encoder trains as task 'contrastive')")
    if name in CONTRASTIVE_MODELS and "task" not in table:
        table["task"] = "contrastive"
        t = table.get("training") if isinstance(table.get("training"), dict) else {}
        if t.pop("metrics", None):
            out.notes.append("training.metrics: ignored for a contrastive encoder (PSNR/SSIM score "
                             "SR images); its eval sets are scored by knn_accuracy")
        if "run_eval" in t:
            t.pop("run_eval")
            out.notes.append("training.run_eval: the eval sets are always encoded and scored "
                             "(knn_accuracy, result_outputs/encodings_epoch_N.csv)")
    if name in CONTRASTIVE_MODELS:
        params = model.get("internal_params") if isinstance(model.get("internal_params"),
                                                           dict) else {}
        if params.get("labelling_strategy") == "half_precision":  # the original's older name
            params["labelling_strategy"] = "double_precision"
        for key, why in _CONTRASTIVE_REFUSED.items():
            if key in params:
                given = params.pop(key)
                if given not in (None, False, ""):
                    out.problems.append((f"model.internal_params.{key}", f"{why}; remove it"))
    pipeline = data.pop("online_pipeline", None)
    users = []
    for section in ("training_sets", "eval_sets"):
        for label, ds in (data.get(section) or {}).items():
            if not isinstance(ds, dict) or "online_degradations" not in ds:
                continue
            where = f"data.{section}.{label}.online_degradations"
            if not ds.pop("online_degradations"):
                continue
            if section == "eval_sets":
                out.problems.append((where, "eval sets are fixed images: degrade them once with "
                                            "rumpy degrade and give lr"))
            elif not isinstance(pipeline, dict):
                out.problems.append((where, "true needs the [data.online_pipeline] table (its "
                                            "pipeline and step tables)"))
            else:
                users.append(ds)
    if isinstance(pipeline, dict):
        configs = dict(pipeline.get("deg_configs") or {})
        configs.update({k: v for k, v in pipeline.items()
                        if k not in ("pipeline", "deg_configs") and isinstance(v, dict)})
        others = [k for k, v in pipeline.items()
                  if k not in ("pipeline", "deg_configs") and not isinstance(v, dict)]
        for key in others:
            out.problems.append((f"data.online_pipeline.{key}", "an online pipeline takes "
                                                                "pipeline and step tables only "
                                                                "(the scale is the model's, the "
                                                                "seed the run's)"))
        for ds in users:
            ds.setdefault("degradations", {"pipeline": pipeline.get("pipeline"),
                                           "deg_configs": configs})
        if not users:
            out.notes.append("data.online_pipeline: no training set sets online_degradations = "
                             "true; not used")
    elif pipeline is not None:
        out.problems.append(("data.online_pipeline", f"expected a table, got {pipeline!r}"))


def translate(table: dict, origins: dict) -> Translation:
    """Rewrites the composed table in place; returns the problems and notes."""
    out = Translation()
    _contrastive(table, out)
    _training(table, out, origins)
    _model(table, out)
    _data(table, out)
    for new, old in out.renamed.items():  # errors about the new key name the file that set it
        if old in origins:
            origins.setdefault(new, origins[old])
    return out


def log_notes(notes: list[str]) -> None:
    for note in dict.fromkeys(notes):
        log.warning("%s", note)
