"""`pcnets bench --bf16`: the run's fast modes timed in fp32 and in bf16 autocast, and top-1 per
timestep compared between the two (difference in pp, agreement of the predictions)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pcnets.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_bf16_times_and_compares_fp32_with_bf16_per_timestep(tmp_path):
    args = ["bench", "--bf16", "--random", "--batch", "1", "--size", "32", "--timesteps", "1"]
    args += ["--repeats", "1", "--device", "cpu", "--out", str(tmp_path / "b")]
    args += ["backbone=efficientnet_lite0", "backbone.probe_size=32", "data=synthetic"]
    args += ["data.num_images=4", "data.size=32", "data.batch_size=4"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = tmp_path / "b"
    speed = pd.read_csv(out / "bench.csv")
    pairs = [(m, n.split("+")[0]) for m, n in zip(speed["mode"], speed["numerics"], strict=True)]
    assert pairs == [
        ("feedforward_fast", "fp32"),
        ("engine_fast", "fp32"),
        ("feedforward_fast", "bf16"),
        ("engine_fast", "bf16"),
    ]
    assert (speed["seconds"] > 0).all()
    acc = pd.read_csv(out / "accuracy.csv")
    fp32, bf16 = (acc[acc["numerics"].str.startswith(p)].set_index("t") for p in ("fp32", "bf16"))
    assert list(fp32.index) == list(bf16.index) == [0, 1]
    agree = next(c for c in acc.columns if c.startswith("agreement_with_fp32"))
    assert (fp32[agree] == 1.0).all() and bf16[agree].between(0, 1).all()
    table = (out / "table.md").read_text()
    for t in (0, 1):
        diff = 100 * (bf16.loc[t, "top1"] - fp32.loc[t, "top1"])
        tops = f"{100 * fp32.loc[t, 'top1']:.2f} | {100 * bf16.loc[t, 'top1']:.2f}"
        assert f"| {t} | {tops} | {diff:+.2f} |" in table
    assert yaml.safe_load((out / "config.yaml").read_text())["bench"]["bf16"] is True
