"""The experiment loggers, each read back with its own library: csv files, TensorBoard's event
reader, MLflow's client (the SQLite store the logger makes, and a real tracking server on the
loopback address), W&B's offline run files. One small sweep (logged_sweep) feeds them all."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from logged_sweep import logged_sweep, logger_settings, summary_values

from pcnets.loggers import log_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two eval-noise jobs logged to csv, TensorBoard, MLflow (SQLite) and W&B (offline)."""
    return logged_sweep(tmp_path_factory)


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


def check_mlflow(client, experiment: str, sweep: Path) -> None:
    """One experiment for the sweep, one run per job with its config, numbers, tags, figure."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = {r.data.params["seed"]: r for r in client.search_runs([exp.experiment_id])}
    assert sorted(runs) == ["0", "1"]
    for num in (0, 1):
        run = runs[str(num)]
        assert run.info.run_name == f"eval-noise-{num}" and run.info.status == "FINISHED"
        assert run.data.params["pc.timesteps"] == "2" and run.data.params["data.num_classes"] == "5"
        assert run.data.tags["command"] == "eval-noise" and run.data.tags["swept"] == f"seed={num}"
        assert run.data.tags["numerics"].startswith("fp32")
        for (key, step), value in summary_values(sweep / str(num)).items():
            found = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
            assert found[step] == pytest.approx(value)
        names = [f.path for f in client.list_artifacts(run.info.run_id, "figures")]
        assert sorted(names) == ["figures/noise_accuracy.png", "figures/terms.png"]


def test_mlflow_logs_a_sweep_as_one_experiment_in_its_sqlite_store(sweep):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{sweep / 'mlflow.db'}")
    check_mlflow(client, f"pcnets/eval-noise/{sweep.name}", sweep)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_tracking_server_on_loopback_receives_the_sweep(sweep, tmp_path):
    from mlflow import MlflowClient

    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, "the server did not start"
            time.sleep(0.5)
        cfg = logger_settings(backends=["mlflow"], tracking_uri=uri, project="server")
        for num in (0, 1):
            log_run(cfg, sweep / str(num))
        check_mlflow(MlflowClient(uri), f"server/eval-noise/{sweep.name}", sweep)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def wandb_records(path: Path):
    """The records of a W&B run file (.wandb): its LevelDB-style log of protobuf records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_wandb_offline_runs_are_one_group_with_config_history_and_figures(sweep):
    runs = {}
    for file in sweep.glob("wandb/offline-run-*/run-*.wandb"):
        info, config, history = None, {}, {}
        for rec in wandb_records(file):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                info = rec.run
                config.update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
            elif kind == "config":
                config.update({u.key: json.loads(u.value_json) for u in rec.config.update})
            elif kind == "history":
                row = {i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item}
                history[int(row["_step"])] = {**history.get(int(row["_step"]), {}), **row}
        runs[info.display_name] = (info, config, history, file)
    assert sorted(runs) == ["eval-noise-0", "eval-noise-1"]
    for num in (0, 1):
        info, config, history, file = runs[f"eval-noise-{num}"]
        assert (info.project, info.run_group, info.job_type) == ("pcnets", sweep.name, "eval-noise")
        assert config["seed"] == str(num) and config["tag.swept"] == f"seed={num}"
        for (key, step), value in summary_values(sweep / str(num)).items():
            assert json.loads(history[step][key]) == pytest.approx(value)
        figure = {
            k.rsplit("/", 1)[1]: json.loads(v) for k, v in history[2].items() if "figures/" in k
        }
        assert figure["_type"] == "image-file" and figure["width"] > 100
        assert (file.parent / "files" / figure["path"]).is_file()
