"""The csv and TensorBoard loggers, read back from their files (TensorBoard's own reader)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from conftest import summary_values

pytestmark = pytest.mark.usefixtures("one_thread")


def test_csv_logger_writes_every_summary_number_with_its_timestep_config_and_tags(sweep):
    for num in (0, 1):
        folder = sweep / "csv" / f"eval-noise-{num}"
        scalars = pd.read_csv(folder / "scalars.csv")
        got = {(r.key, int(r.step)): r.value for r in scalars.itertuples() if r.step == r.step}
        want = summary_values(sweep / str(num))
        assert {k: got[k] for k in want} == pytest.approx(want)
        assert yaml.safe_load((folder / "hparams.yaml").read_text())["seed"] == str(num)
        tags = yaml.safe_load((folder / "tags.yaml").read_text())
        assert (tags["command"], tags["swept"], tags["sweep"]) == (
            "eval-noise",
            f"seed={num}",
            str(sweep),
        )
        assert tags["numerics"].startswith("fp32")


def test_tensorboard_event_files_hold_the_numbers_config_and_figures(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accuracies = []
    for num in (0, 1):
        events = EventAccumulator(
            str(sweep / "tensorboard" / f"eval-noise-{num}"),
            size_guidance={"images": 0, "tensors": 0},
        )
        events.Reload()
        want = summary_values(sweep / str(num))
        for (key, step), value in want.items():
            found = {e.step: e.value for e in events.Scalars(key)}
            assert found[step] == pytest.approx(value, abs=1e-5)
        accuracies.append(want)
        tags = events.Tags()
        assert "figures/noise_accuracy" in tags["images"]
        image = events.Images("figures/noise_accuracy")[0]
        assert image.width > 100 and image.height > 100
        config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert f"    seed: {num}" in config and "    pc.timesteps: 2" in config
    assert accuracies[0] != accuracies[1]  # the seeds' noise differs: the numbers are each job's
