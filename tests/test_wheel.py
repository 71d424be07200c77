"""The wheel carries the configs: built from a copy of the package, installed into a folder of its
own, then imported from outside the source tree, it builds a network and runs a command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from helpers import REPO

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
# Isolated (-I: no PYTHONPATH, no cwd, no user site), the installed wheel first on sys.path so
# that it wins over the editable install of the checkout in this environment.
CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
import pcnets
from pcnets import build_pnet
from pcnets.cli import app
assert pcnets.__file__.startswith(sys.argv[1]), pcnets.__file__
pnet = build_pnet("efficientnet_lite0", pretrained=False)
print("encoders", pnet.num_encoders, pcnets.__file__)
app(["data", "check", "data=synthetic", "data.num_images=12"], standalone_mode=False)
"""


def test_the_wheel_builds_a_network_and_runs_a_command_outside_the_source_tree(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "pcnets", src / "pcnets", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)]
    subprocess.run(build, check=True, cwd=tmp_path, timeout=300)
    (wheel,) = wheels.glob("pcnets-*.whl")
    install = [*PIP, "install", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, cwd=tmp_path, timeout=300)
    assert (target / "pcnets" / "conf" / "eval-noise.yaml").is_file()
    assert len(list((target / "pcnets" / "conf" / "backbone").glob("*.yaml"))) >= 5
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCNETS_CONF")}
    env["OMP_NUM_THREADS"] = "1"
    run = [sys.executable, "-I", "-c", CHECK, str(target)]
    done = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"encoders 8 {target}" in done.stdout
    assert "12 images of" in done.stdout and "from synthetic" in done.stdout
