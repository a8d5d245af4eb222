"""`val_example_indices`: chosen eval images' outputs kept at every validation, one strip per
image over the epochs."""
from __future__ import annotations

import pytest
from PIL import Image

from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.results.examples import LABEL, PANEL
from rumpy.training.setup import prepare


def test_example_images_are_kept_at_every_validation_as_one_strip(write_config, tmp_path):
    path = write_config(num_epochs=3, extra_training='logging = "text"\nsave_samples = false')
    path.write_text(path.read_text() + "val_example_indices = [1]\n")
    keys = prepare(load_config(path)).task.evaluator.keys["chelsea"]
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    folder = node / "result_outputs" / "examples" / "chelsea"
    own = folder / keys[1]
    assert sorted(p.name for p in own.iterdir()) == ["bicubic.png", "epoch_1.png", "epoch_2.png",
                                                      "epoch_3.png", "hr.png"]
    assert sorted(p.name for p in folder.glob("*.png")) == [f"{keys[1]}.png"]  # only index 1
    hr = Image.open(own / "hr.png")
    assert hr.size == Image.open(own / "epoch_3.png").size and max(hr.size) <= PANEL
    strip = Image.open(folder / f"{keys[1]}.png")
    assert strip.size == (5 * hr.width + 4 * 4, hr.height + LABEL)  # bicubic, 3 epochs, HR
    # the outputs changed as the model trained
    assert Image.open(own / "epoch_1.png").tobytes() != Image.open(own / "epoch_3.png").tobytes()
    assert not list((node / "result_outputs").glob("epoch_*_samples"))  # save_samples = false
    # a run with examples is still recognisably rumpy's own: overwrite_data may replace it
    assert train_main(["--parameters", str(path), "--overwrite_data", "--num_epochs", "1"]) == 0


def test_example_indices_out_of_range_are_refused(write_config, tmp_path):
    path = write_config(num_epochs=1)
    path.write_text(path.read_text() + "val_example_indices = [5]\n")
    with pytest.raises(ConfigError, match=r"data.eval_sets.chelsea.val_example_indices: "
                                          r"expected indices 0..1"):
        prepare(load_config(path))
    assert not (tmp_path / "Results").exists()


def test_write_output_nth_epoch_writes_samples_and_plots_every_nth_and_at_the_last(write_config,
                                                                                   tmp_path):
    path = write_config(num_epochs=5, extra_training="write_output_nth_epoch = 2")
    assert train_main(["--parameters", str(path)]) == 0
    outputs = tmp_path / "Results" / "tiny" / "result_outputs"
    assert sorted(p.name for p in outputs.glob("epoch_*_samples")) == [
        "epoch_2_samples", "epoch_4_samples", "epoch_5_samples"]
    assert (outputs / "PSNR.png").is_file()
    # the CSVs are written at every validation regardless
    assert len(list(outputs.glob("per_image_epoch_*.csv"))) == 5
