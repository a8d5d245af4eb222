"""--dev, --overfit and log_grad: what they change in a real run."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from conftest import rows
from rumpy.cli.train import main as train_main
from rumpy.core.checkpoint import load_checkpoint


def test_dev_mode_limits_epochs_and_batches_logs_gradients_and_uses_a_temporary_folder(
        write_config, tmp_path, caplog):
    path = write_config(num_epochs=50, extra_training='logging = "text"')
    path.write_text(path.read_text().replace("crop = 12\n", "crop = 12\nrepeat = 6\n"))
    save = tmp_path / "devruns"
    assert train_main(["--parameters", str(path), "--dev", "--save_loc", str(save)]) == 0
    node = save / "tiny"
    summary = rows(node)
    assert [r["epoch"] for r in summary] == ["1", "2", "3", "4", "5"]
    # 48 patches / batch 4 = 12 batches an epoch; --dev trains 10 of them
    assert load_checkpoint(node / "saved_models" / "epoch_5.pt")["parts"]["loop"]["step"] == 50
    for row in summary:
        assert 0 < float(row["grad-norm-mean"]) <= float(row["grad-norm-max"]) < math.inf
    assert "detect_anomaly = true" in (node / "config.toml").read_text()
    # without --save_loc the run goes to a temporary folder, which the log names
    caplog.clear()
    assert train_main(["--parameters", str(path), "--dev", "training.limit_eval_batches=1",
                       "training.num_epochs=1", "training.detect_anomaly=false"]) == 0
    assert "--dev: the run folder goes to" in caplog.text
    where = Path(caplog.text.split("--dev: the run folder goes to ")[1].split()[0])
    per_image = (where / "tiny" / "result_outputs" / "per_image_epoch_1.csv").read_text()
    assert len(per_image.strip().splitlines()) == 2  # header + the first eval batch's image
    assert not (tmp_path / "Results").exists()


def test_log_grad_columns_match_the_clipping_norm(write_config, tmp_path):
    path = write_config(num_epochs=1, extra_training='logging = "text"\nlog_grad = true',
                        extra_params="grad_clip = 1e-6")
    assert train_main(["--parameters", str(path)]) == 0
    row = rows(tmp_path / "Results" / "tiny")[0]
    # clipping at 1e-6 does not hide the norm: the columns hold the norm before clipping
    assert float(row["grad-norm-mean"]) > 1e-3


def test_overfit_drives_the_loss_down_by_orders_of_magnitude(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2]
    np.savez(tmp_path / "points.npz", inputs=x, targets=y)
    path = tmp_path / "reg.toml"
    path.write_text(textwrap.dedent(f"""\
        experiment = "over"
        experiment_save_loc = "{tmp_path / 'Results'}"
        task = "regression"
        [training]
        num_epochs = 60
        gpu = "off"
        aim_track = false
        logging = "text"
        save_samples = false
        [model]
        name = "mlp"
        [model.internal_params]
        lr = 3e-3
        hidden_sizes = [64, 64]
        [data]
        batch_size = 16
        dataloader_threads = 0
        [data.training_sets.points]
        type = "arrays"
        file = "{tmp_path / 'points.npz'}"
        [data.eval_sets.points]
        type = "arrays"
        file = "{tmp_path / 'points.npz'}"
        """))
    assert train_main(["--parameters", str(path), "--overfit", "--save_loc",
                       str(tmp_path / "Results")]) == 0
    summary = rows(tmp_path / "Results" / "over")
    first, last = summary[0], summary[-1]
    assert float(last["train-loss"]) < float(first["train-loss"]) / 100
    assert float(last["val-loss"]) < float(first["val-loss"]) / 100  # validated on that batch
    per_sample = (tmp_path / "Results" / "over" / "result_outputs" /
                  "per_sample_epoch_60.csv").read_text().strip().splitlines()
    assert len(per_sample) == 1 + 16 and per_sample[1].startswith("overfit,sample_0,")


def test_overfit_for_super_resolution_validates_on_the_training_patches(write_config, tmp_path,
                                                                      caplog):
    path = write_config(num_epochs=3, extra_training='logging = "text"')
    # a check beside the config's real run: its folder goes to a temporary folder
    (tmp_path / "Results" / "tiny").mkdir(parents=True)
    caplog.set_level("INFO")
    assert train_main(["--parameters", str(path), "--overfit"]) == 0
    assert list((tmp_path / "Results").iterdir()) == [tmp_path / "Results" / "tiny"]
    where = Path(caplog.text.split("--overfit: the run folder goes to ")[1].split()[0])
    assert rows(where / "tiny")
    assert train_main(["--parameters", str(path), "--overfit", "--save_loc",
                       str(tmp_path / "Results"), "--experiment_name", "over"]) == 0
    summary = rows(tmp_path / "Results" / "over")
    assert "val-PSNR" in summary[0] and float(summary[-1]["val-PSNR"]) > float(summary[0]["val-PSNR"])
    per_image = (tmp_path / "Results" / "over" / "result_outputs" /
                 "per_image_epoch_3.csv").read_text().strip().splitlines()
    assert [line.split(",")[:2] for line in per_image[1:]] == [["overfit", f"patch_{i}"]
                                                              for i in range(4)]
