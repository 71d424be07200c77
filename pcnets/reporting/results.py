"""One tidy pandas DataFrame across run folders, for a notebook:

    import pcnets.results
    df = pcnets.results.load("results/eval-noise/multirun/2026-12-07_13-00-00")  # a sweep
    df[df.timestep == df.timestep.max()].groupby(["pc.alpha", "sigma"]).accuracy.mean()

Every row of each run's metrics.csv (``summary=True``: summary.csv), starting with the run's
labels (run_id, backbone, decoders), joined with what made it: the command, status and numerics
(provenance.json), the dynamics' settings (config.yaml, as dotted columns: pc.beta, pc.lam,
pc.alpha, pc.error_reduction, pc.gradient_scaling, seed, ...), the decoders' held-out R^2 from
the decoder file when it records them, and a sweep job's swept values (Hydra's overrides). The
paths may be run folders, sweep or results folders (searched for run folders), or globs.
"""

from __future__ import annotations

import functools
import glob
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from pcnets.errors import PcnetsError
from pcnets.reporting.run_folders import find_runs
from pcnets.runtime.runs import with_labels

# The settings every row carries, as dotted config paths (absent ones are left out).
CONFIG_COLUMNS = (
    "pc.beta",
    "pc.lam",
    "pc.alpha",
    "pc.timesteps",
    "pc.error_reduction",
    "pc.gradient_scaling",
    "pc.hyper",
    "seed",
    "data.name",
    "data.limit",
)


def load(paths: str | Path | Iterable[str | Path], summary: bool = False) -> pd.DataFrame:
    """The rows of every run folder under ``paths`` as one DataFrame (see the module doc)."""
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    frames = [
        frame for run in find_runs(_expand(given)) if (frame := _rows(run, summary)) is not None
    ]
    if not frames:
        what = "summary.csv" if summary else "metrics.csv"
        raise PcnetsError(f"no run folder with a {what} under {', '.join(map(str, given))}")
    return pd.concat(frames, ignore_index=True, sort=False)


def export(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to FILE.csv or FILE.parquet (pyarrow); the folder is made."""
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise PcnetsError(f"--export {path}: give a .csv or .parquet file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
        return path
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise PcnetsError(
            "--export .parquet needs pyarrow: pip install 'pcnets[parquet]'"
        ) from None
    mixed = [c for c in frame.columns if frame[c].dropna().map(type).nunique() > 1]
    frame.astype({c: str for c in mixed}).to_parquet(path, index=False)  # one type per column
    return path


def _expand(paths: list) -> list[Path]:
    """Globs expanded (a pattern that matches nothing is an error), other paths as given."""
    out: list[Path] = []
    for p in map(str, paths):
        if any(ch in p for ch in "*?["):
            hits = sorted(Path(h) for h in glob.glob(p) if Path(h).is_dir())
            if not hits:
                raise PcnetsError(f"{p}: the pattern matches no folder")
            out += hits
        else:
            out.append(Path(p))
    return out


def _rows(run: Path, summary: bool) -> pd.DataFrame | None:
    file = run / ("summary.csv" if summary else "metrics.csv")
    if not file.is_file() or not (run / "config.yaml").is_file():
        return None
    try:
        frame = pd.read_csv(file)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise PcnetsError(f"{file} cannot be read ({str(exc).splitlines()[0]})") from None
    frame = with_labels(run, frame)
    context = run_context(run)
    extra = {k: v for k, v in context.items() if k not in frame.columns}
    return frame.assign(**{k: [v] * len(frame) for k, v in extra.items()})


def run_context(run: Path) -> dict:
    """What made a run, one value per column: command, status, numerics, config settings, the
    decoders' R^2 and the sweep's swept values."""
    cfg = OmegaConf.load(run / "config.yaml")
    try:
        prov = json.loads((run / "provenance.json").read_text())
    except (OSError, ValueError):
        prov = {}
    out = {
        "command": prov.get("command"),
        "status": prov.get("status"),
        "numerics": prov.get("numerics"),
        "path": str(run),
    }
    for key in CONFIG_COLUMNS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            out[key] = _scalar(
                OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            )
    decoders = OmegaConf.select(cfg, "pc.decoders", default=None)
    if decoders:
        r2 = decoder_r2(str(decoders))
        if r2:
            out["decoders_r2"] = " ".join(f"{v:.4g}" for v in r2)
            out["decoders_r2_min"] = min(r2)
    out.update({k: v for k, v in swept_values(run).items() if k not in out})
    return out


def _scalar(value):
    """A list (one number per encoder) as its text, so that the column can be grouped by."""
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else value


@functools.lru_cache(maxsize=64)
def decoder_r2(path: str) -> tuple[float, ...]:
    """The held-out R^2 per decoder that a decoder file records (train-feedback writes them),
    () when the file is gone or records none."""
    from pcnets.core.decoders import read_decoder_file

    if not Path(path).is_file():
        return ()
    try:
        ckpt = read_decoder_file(path)
    except PcnetsError:
        return ()
    return tuple(float(v) for v in (ckpt.get("heldout_r2") or []))


def swept_values(run: Path) -> dict:
    """A sweep job's values of the swept keys ({"pc.alpha": 0.1}), from Hydra's overrides of the
    job (.hydra/overrides.yaml) and of its sweep (../multirun.yaml); {} outside a sweep."""
    job, sweep = run / ".hydra" / "overrides.yaml", run.parent / "multirun.yaml"
    if not job.is_file() or not sweep.is_file():
        return {}
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    task = OmegaConf.select(OmegaConf.load(sweep), "hydra.overrides.task", default=[]) or []
    swept = {o.key_or_group for o in parser.parse_overrides(list(task)) if o.is_sweep_override()}
    own = parser.parse_overrides([str(o) for o in OmegaConf.load(job)])
    return {o.key_or_group: _scalar(o.value()) for o in own if o.key_or_group in swept}
