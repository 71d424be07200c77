"""Top-1 accuracy at every timestep on noisy and corrupted images (METHOD.md section 7, items 1-2).

Each condition (a noise sigma, or a corruption x severity) is one cell of a resumable run folder
(runtime.runs.Run): rows per timestep with counts in metrics.csv, and every image's prediction at
every timestep in images/<cell>.npz, from which the bootstrap intervals over images come. The
dynamics run once per batch for all timesteps. Under torchrun the images are sharded over the
processes and the predictions gathered, so every number equals a single process's.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF
from tqdm import tqdm

from pcnets.core.pnet import PredictiveNet
from pcnets.data import (
    ImageFiles,
    build_dataset,
    dataset_samples,
    effective_split,
    select_indices,
)
from pcnets.data.imagenet_c import ImageNetCFolder, cell_dataset, check_config, image_key
from pcnets.errors import PcnetsError, suggest
from pcnets.metrics import (
    ALEXNET_ERR,
    ALL_CORRUPTIONS,
    SEVERITIES,
    bootstrap_means,
    percentile_interval,
    relative_mce,
    standard_mce,
)
from pcnets.reporting.figures import Curve, Panel, save_grid, save_panels
from pcnets.runtime.devices import resolve_device, switch
from pcnets.runtime.distributed import all_reduce_sum, barrier, init_distributed, is_main
from pcnets.runtime.loading import build_loader
from pcnets.runtime.runs import Run, cell_key

NOISE_SPACES = ("normalized", "pixel")
IMAGES = "images"  # per-image predictions: <run>/images/<cell>.npz


# ---- noise: the same sample for an image whatever the batch, process or model ------------------


def noise_seed(seed: int, key: str, sigma: float) -> int:
    """A stable 63-bit seed for the noise of one image at one sigma (sha256 of seed|key|sigma)."""
    text = f"{int(seed)}|{key}|{float(sigma)!r}|gaussian"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") % 2**63


def add_noise(
    image: torch.Tensor,
    sigma: float,
    seed: int,
    std: torch.Tensor | Sequence[float] | None = None,
    space: str = "normalized",
) -> torch.Tensor:
    """A [0, 1] image (C,H,W) plus N(0, sigma^2) noise drawn from `seed`: in the network's
    normalised space (sigma x the channel `std` in pixels, not clipped) or in pixel space
    (sigma in [0, 1] units, then clipped to [0, 1])."""
    space = check_noise_space(space)
    if sigma == 0:
        return image
    generator = torch.Generator().manual_seed(int(seed))
    z = torch.randn(image.shape, generator=generator, dtype=torch.float32).to(image.dtype)
    if space == "pixel":
        return (image + float(sigma) * z).clamp_(0.0, 1.0)
    if std is None:
        raise PcnetsError("noise in normalised space needs the network's channel std")
    std = torch.as_tensor(std, dtype=image.dtype).reshape(-1, 1, 1)
    return image + float(sigma) * std * z


def check_noise_space(space: str) -> str:
    """'normalized' or 'pixel' (the British spelling is accepted); anything else is an error."""
    space = "normalized" if str(space) == "normalised" else str(space)
    if space not in NOISE_SPACES:
        raise PcnetsError(
            f"eval.noise_space must be one of {', '.join(NOISE_SPACES)}, got {space!r}"
            f"{suggest(space, NOISE_SPACES)}"
        )
    return space


def image_keys(dataset: Dataset) -> list[str]:
    """Stable per-image ids: the dataset's `keys`, else '<wnid>/<file>' of its `samples`."""
    if hasattr(dataset, "keys"):
        return list(dataset.keys)
    return [image_key(path) for path, _ in dataset.samples]


class Indexed(Dataset):
    """(image, label, index) items, so the evaluation knows which image each prediction is for."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.targets = list(dataset.targets)
        self.keys = image_keys(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return image, label, index


class NoisyImages(Indexed):
    """Images with Gaussian noise seeded per image (noise_seed(seed, key, sigma)), added in the
    DataLoader workers: identical for every batch size, process count, timestep and model."""

    def __init__(
        self,
        dataset: Dataset,
        sigma: float,
        seed: int = 0,
        std: torch.Tensor | Sequence[float] | None = None,
        space: str = "normalized",
    ):
        super().__init__(dataset)
        self.sigma, self.seed, self.space = float(sigma), int(seed), check_noise_space(space)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        seed = noise_seed(self.seed, self.keys[index], self.sigma)
        return add_noise(image, self.sigma, seed, self.std, self.space), label, index


# ---- running the dynamics over a dataset ----------------------------------------------------


def predict(
    pnet: PredictiveNet,
    loader,
    timesteps: int,
    num_images: int,
    device: torch.device | str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    bar: tqdm | None = None,
) -> np.ndarray:
    """Top-1 class of every image at every timestep, shape (num_images, timesteps + 1), from a
    loader of (image, label, index) batches; this process's shard is gathered with the others'."""
    device = torch.device(device)
    found = np.zeros((num_images, timesteps + 2), dtype=np.int64)  # last column: times seen
    cast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if amp and device.type == "cuda"
        else nullcontext()
    )
    for images, _, index in loader:
        x = images.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with cast:
            logits = pnet.run(x, timesteps=timesteps)
        top = torch.stack([out.argmax(dim=1) for out in logits], dim=1).cpu().numpy()
        found[index.numpy(), :-1] = top
        found[index.numpy(), -1] += 1
        if bar is not None:
            bar.update(len(index))
    found = all_reduce_sum(found)  # each image is in one shard: the sum is a gather
    if (found[:, -1] != 1).any():
        raise RuntimeError("some images were predicted by no process, or by more than one")
    return found[:, :-1]


@dataclass
class Cell:
    """One condition of a sweep: its resume key, its per-image file, the columns of its rows,
    and how to make its dataset of (image, label, index) items (only when it runs)."""

    key: str
    file: str
    fields: dict
    dataset: Callable[[], Indexed]


def cell_rows(correct: np.ndarray, fields: dict) -> list[dict]:
    """One row per timestep: the cell's fields, timestep, correct, total, accuracy."""
    total = int(correct.shape[0])
    counts = correct.sum(axis=0)
    return [
        {**fields, "timestep": t, "correct": int(c), "total": total, "accuracy": float(c) / total}
        for t, c in enumerate(counts)
    ]


def save_cell_images(path: Path, keys: Sequence[str], labels, predictions: np.ndarray) -> None:
    """Per-image labels and predictions of one cell as a compressed .npz, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        keys=np.asarray(keys, dtype=str),
        labels=np.asarray(labels, dtype=np.int32),
        predictions=np.asarray(predictions, dtype=np.int32),
    )
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as fh:
        fh.write(buffer.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)


def load_cell_images(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, labels, correct of shape (image, timestep)) from a cell's .npz."""
    with np.load(path) as data:
        keys, labels, predictions = list(data["keys"]), data["labels"], data["predictions"]
    return keys, labels, predictions == labels[:, None]


def _finished(run: Run, cell: Cell) -> bool:
    """Rank 0 decides (it alone reads the run folder); every process learns its answer."""
    done = run.writer and run.is_done(cell.key) and (run.path / IMAGES / cell.file).is_file()
    return all_reduce_sum(int(done)) > 0


def evaluate_cells(
    run: Run,
    cells: Sequence[Cell],
    pnet: PredictiveNet,
    cfg: DictConfig,
    device: torch.device,
    progress: bool = True,
) -> None:
    """Run every unfinished cell: predictions per image and timestep, then its .npz and rows."""
    timesteps = check_timesteps(cfg.pc.timesteps)
    amp = switch(cfg.get("amp", "auto"), device) and device.type == "cuda"
    channels_last = switch(cfg.get("channels_last", "auto"), device)
    if channels_last:
        pnet.to(memory_format=torch.channels_last)
    data_cfg = loader_config(cfg)
    todo = [cell for cell in cells if not _finished(run, cell)]
    show = progress and run.writer
    outer = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells", disable=not show)
    with outer:
        for cell in todo:
            dataset = cell.dataset()
            loader = build_loader(dataset, data_cfg, device, distributed=True)
            with tqdm(
                total=len(loader.sampler),
                desc=cell.file.removesuffix(".npz"),
                unit="img",
                leave=False,
                disable=not show,
            ) as bar:
                predictions = predict(
                    pnet, loader, timesteps, len(dataset), device, amp, channels_last, bar
                )
            labels = np.asarray(dataset.targets)
            if run.writer:
                save_cell_images(run.path / IMAGES / cell.file, dataset.keys, labels, predictions)
            run.record(cell.key, cell_rows(predictions == labels[:, None], cell.fields))
            outer.update(1)


def loader_config(cfg: DictConfig) -> DictConfig:
    """The data config with eval.batch_size in place of data.batch_size (when it is set)."""
    batch = cfg.eval.get("batch_size")
    if batch is None:
        return cfg.data
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise PcnetsError(f"eval.batch_size must be a positive whole number or null, got {batch!r}")
    return OmegaConf.merge(cfg.data, {"batch_size": batch})


def check_timesteps(value) -> int:
    """pc.timesteps as an int >= 0, else a PcnetsError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PcnetsError(f"timesteps must be a whole number >= 0, got {value!r}")
    return int(value)


def check_sigmas(values) -> list[float]:
    """eval.sigmas as distinct floats >= 0 in the order given (0 = clean), else a PcnetsError."""
    values = list(values) if OmegaConf.is_list(values) or isinstance(values, list | tuple) else None
    if not values:
        raise PcnetsError("eval.sigmas must be a non-empty list such as [0, 0.25, 0.5]")
    sigmas: list[float] = []
    for value in values:
        try:
            sigma = float(value)
        except (TypeError, ValueError):
            raise PcnetsError(f"eval.sigmas must hold numbers, got {value!r}") from None
        if not np.isfinite(sigma) or sigma < 0:
            raise PcnetsError(f"eval.sigmas must be >= 0, got {value!r}")
        if sigma not in sigmas:
            sigmas.append(sigma)
    return sigmas


def _device(cfg: DictConfig) -> torch.device:
    device = resolve_device(cfg.get("device", "auto"))
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _prepare(pnet: PredictiveNet | None, cfg: DictConfig, device: torch.device) -> PredictiveNet:
    if pnet is None:
        from pcnets.backbones import pnet_from_config

        return pnet_from_config(cfg, device)
    return pnet.to(device).eval()


def _warn_untrained(cfg: DictConfig) -> None:
    if not cfg.pc.get("decoders") and not cfg.pc.get("hyper") and is_main():
        print(
            "warning: pc.decoders is not set, so the feedback decoders are untrained (random); "
            "pass pc.decoders=PATH from `pcnets train-feedback`",
            file=sys.stderr,
        )


class Report(NamedTuple):
    """What a command made of its run folder: table.md's text, terminal lines, figure files."""

    table: str
    summary: list[str]
    figures: list[Path]


@dataclass
class Evaluation:
    """The result of eval_noise / eval_corruptions: the run folder, its rows, its report."""

    path: Path
    metrics: pd.DataFrame
    report: Report | None


# ---- eval-noise ---------------------------------------------------------------------------


def noise_file(sigma: float) -> str:
    """The per-image file name of one sigma under <run>/images/."""
    return f"noise_sigma={float(sigma):g}.npz"


def eval_noise(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    dataset: Dataset | None = None,
    progress: bool = True,
) -> Evaluation:
    """Top-1 accuracy at timesteps 0..pc.timesteps for every eval.sigmas (0 = clean), noise in
    eval.noise_space; resumable and torchrun-sharded. `pnet`/`dataset` default to the config's."""
    sigmas = check_sigmas(cfg.eval.sigmas)
    space = check_noise_space(cfg.eval.get("noise_space", "normalized"))
    check_timesteps(cfg.pc.timesteps)
    loader_config(cfg)
    init_distributed()
    device = _device(cfg)
    pnet = _prepare(pnet, cfg, device)
    base = dataset if dataset is not None else build_dataset(cfg.data, pnet.transform, "val")
    if len(base) == 0:
        raise PcnetsError("the evaluation dataset is empty; check data.split and data.limit")
    std = pnet.std.flatten().cpu()
    seed = int(cfg.get("seed", 0))
    _warn_untrained(cfg)
    run = Run("eval-noise", cfg)
    cells = [
        Cell(
            cell_key(sigma=sigma),
            noise_file(sigma),
            {"condition": "clean" if sigma == 0 else "noise", "sigma": sigma},
            lambda sigma=sigma: NoisyImages(base, sigma, seed, std, space),
        )
        for sigma in sigmas
    ]
    evaluate_cells(run, cells, pnet, cfg, device, progress)
    report = noise_report(run.path) if run.writer else None
    run.finish()
    barrier()  # the other processes wait for rank 0's report, then all leave together
    return Evaluation(run.path, run.metrics(), report)


def _intervals(cfg: DictConfig) -> tuple[int, float, int]:
    ev = cfg.get("eval") or {}
    return int(ev.get("bootstrap", 1000)), float(ev.get("level", 0.95)), int(cfg.get("seed", 0))


def noise_report(path: str | Path) -> Report:
    """table.md and noise_accuracy.png of an eval-noise run folder, from its metrics.csv (counts)
    and its per-image files (bootstrap intervals over images, paired for the change from t=0)."""
    path = Path(path)
    cfg = OmegaConf.load(path / "config.yaml")
    resamples, level, seed = _intervals(cfg)
    df = pd.read_csv(path / "metrics.csv")
    sigmas = [float(s) for s in df["sigma"].drop_duplicates()]
    timesteps = int(df["timestep"].max())
    pct = f"{level:.0%}"
    stats = {}
    for sigma in sigmas:
        _, _, correct = load_cell_images(path / IMAGES / noise_file(sigma))
        rows = df[df["sigma"] == sigma].sort_values("timestep")
        counts = rows["correct"].to_numpy()
        if not np.array_equal(correct.sum(axis=0), counts):
            raise PcnetsError(f"{path}: per-image file of sigma {sigma:g} disagrees with metrics")
        samples = bootstrap_means(correct, resamples, seed)
        low, high = percentile_interval(samples, level)
        change_low, change_high = percentile_interval(samples - samples[:, :1], level)
        point = counts / rows["total"].to_numpy()
        stats[sigma] = {
            "acc": 100 * point,
            "low": 100 * low,
            "high": 100 * high,
            "change": 100 * (point - point[0]),
            "change_low": 100 * change_low,
            "change_high": 100 * change_high,
            "n": int(rows["total"].iloc[0]),
        }
    n = next(iter(stats.values()))["n"]
    space = check_noise_space(cfg.eval.get("noise_space", "normalized"))
    noise = (
        "N(0, sigma^2) added in the network's normalised space (sigma x channel std in pixels, "
        "not clipped)"
        if space == "normalized"
        else "N(0, sigma^2) added to [0, 1] pixels, then clipped to [0, 1]"
    )
    lines = [
        f"# eval-noise: {cfg.backbone.name}, top-1 accuracy per timestep under Gaussian noise",
        "",
        *_describe(cfg, n),
        f"- noise: {noise}; one seeded sample per image and sigma, the same at every timestep",
        f"- intervals: {pct} percentile bootstrap over images ({resamples} resamples); the change "
        "from t=0 is paired (the same resampled images at both timesteps)",
        "",
        "## Top-1 accuracy (%)",
        "",
    ]
    header = ["sigma", *[f"t={t}" for t in range(timesteps + 1)]]
    body = [[_sigma_label(s), *[f"{a:.1f}" for a in st["acc"]]] for s, st in stats.items()]
    lines += [_markdown(header, body), ""]
    lines += [f"## Change from timestep 0 (percentage points, {pct} interval)", ""]
    header = [
        "sigma",
        f"t=0 accuracy [{pct}]",
        f"t={timesteps} accuracy [{pct}]",
        f"change at t={timesteps} [{pct}]",
        "best t",
        f"change at best t [{pct}]",
    ]
    body, summary = [], []
    for sigma, st in stats.items():
        best = int(np.argmax(st["acc"]))
        last = _interval_text(st["change"][-1], st["change_low"][-1], st["change_high"][-1], "+.1f")
        body.append(
            [
                _sigma_label(sigma),
                _interval_text(st["acc"][0], st["low"][0], st["high"][0], ".1f"),
                _interval_text(st["acc"][-1], st["low"][-1], st["high"][-1], ".1f"),
                last,
                str(best),
                _interval_text(
                    st["change"][best], st["change_low"][best], st["change_high"][best], "+.1f"
                ),
            ]
        )
        summary.append(
            f"{_sigma_label(sigma)}: t=0 {st['acc'][0]:.1f}% -> t={timesteps} "
            f"{st['acc'][-1]:.1f}% (change {last} pp)"
        )
    lines += [_markdown(header, body), ""]
    lines += [
        "The best t is chosen on these same images, so its change is optimistic; the change at "
        f"t={timesteps} is the unbiased one.",
        "",
        "Figure: noise_accuracy.png",
        "",
    ]
    figure = _noise_figure(path / "noise_accuracy.png", cfg, stats, n, pct, space)
    _write_text(path / "table.md", "\n".join(lines))
    return Report("\n".join(lines), summary, [figure])


def _noise_figure(target: Path, cfg, stats: dict, n: int, pct: str, space: str) -> Path:
    accuracy = [Curve(_sigma_label(s), st["acc"], st["low"], st["high"]) for s, st in stats.items()]
    change = [
        Curve(_sigma_label(s), st["change"], st["change_low"], st["change_high"])
        for s, st in stats.items()
    ]
    unit = "normalised units" if space == "normalized" else "pixel units, clipped"
    return save_panels(
        target,
        [
            Panel("Top-1 accuracy", accuracy, ylabel="top-1 accuracy (%)"),
            Panel(
                "Change from timestep 0",
                change,
                ylabel="accuracy - accuracy at t=0 (percentage points)",
                reference=0.0,
                reference_label="no change",
            ),
        ],
        f"{cfg.backbone.name} under Gaussian noise (sigma in {unit}), {n} images",
        note=f"Bands: {pct} bootstrap intervals over images. t=0 is the feedforward network; "
        "t>0 adds predictive-coding feedback.",
    )


def _sigma_label(sigma: float) -> str:
    return "clean (sigma 0)" if sigma == 0 else f"sigma {sigma:g}"


# ---- eval-corruptions -----------------------------------------------------------------------


def corruption_file(name: str, severity: int) -> str:
    """The per-image file name of one corruption x severity under <run>/images/."""
    return f"{name}_{int(severity)}.npz"


def eval_corruptions(
    cfg: DictConfig, pnet: PredictiveNet | None = None, progress: bool = True
) -> Evaluation:
    """Top-1 accuracy at timesteps 0..pc.timesteps on every corruptions.names x severities cell,
    read from an ImageNet-C tree (checked first) or generated from the val images on the fly."""
    names, severities = check_config(cfg.corruptions)  # the whole tree, before any work
    check_timesteps(cfg.pc.timesteps)
    loader_config(cfg)
    source = str(cfg.corruptions.get("source", "generate"))
    if source == "generate":
        base = dataset_samples(cfg.data, "val")
        if not base:
            raise PcnetsError("no val images to corrupt; check data.split and data.limit")
    else:
        root = Path(str(cfg.corruptions.root)).expanduser()
        classes = _class_index(cfg, root / names[0] / str(severities[0]))
    init_distributed()
    device = _device(cfg)
    pnet = _prepare(pnet, cfg, device)
    _warn_untrained(cfg)
    run = Run("eval-corruptions", cfg)

    def factory(name: str, severity: int) -> Callable[[], Indexed]:
        if source == "generate":
            return lambda: Indexed(cell_dataset(cfg.corruptions, name, severity, base))
        return lambda: Indexed(_folder_cell(cfg, root, name, severity, classes))

    cells = [
        Cell(
            cell_key(corruption=name, severity=severity),
            corruption_file(name, severity),
            {"condition": name, "corruption": name, "severity": severity},
            factory(name, severity),
        )
        for name in names
        for severity in severities
    ]
    evaluate_cells(run, cells, pnet, cfg, device, progress)
    report = corruption_report(run.path) if run.writer else None
    run.finish()
    barrier()  # the other processes wait for rank 0's report, then all leave together
    return Evaluation(run.path, run.metrics(), report)


def _class_index(cfg: DictConfig, first_cell: Path) -> dict[str, int]:
    """wnid -> label: the clean val's sorted class folders when data.root has them (a partial
    tree then keeps the right labels), else the tree's own, which must be all the classes."""
    data = cfg.data
    if str(data.get("kind", "folder")) == "folder" and data.get("root") not in (None, "", "???"):
        folders = data.get("folders") or {}
        val = Path(str(data.root)).expanduser() / str(folders.get("val", "val"))
        if val.is_dir():
            wnids = sorted(e.name for e in os.scandir(val) if e.is_dir() and e.name[0] != ".")
            return {w: i for i, w in enumerate(wnids)}
    wnids = sorted(e.name for e in os.scandir(first_cell) if e.is_dir() and e.name[0] != ".")
    expected = data.get("num_classes")
    if expected is not None and len(wnids) != int(expected):
        raise PcnetsError(
            f"{first_cell} has {len(wnids)} class folders, not data.num_classes={expected}, so "
            "its labels are unknown: set data.root to the clean ImageNet (its val class folders "
            "give the labels) or data.num_classes"
        )
    return {w: i for i, w in enumerate(wnids)}


def _folder_cell(
    cfg: DictConfig, root: Path, name: str, severity: int, classes: dict[str, int]
) -> ImageFiles:
    """One ImageNet-C cell read from disk, labelled by `classes`, after data.split and data.limit
    (the same images that source=generate would corrupt from the same val folder)."""
    cell = ImageNetCFolder(root, name, severity)
    items = []
    for path, _ in cell.samples:
        wnid = Path(path).parent.name
        if wnid not in classes:
            raise PcnetsError(f"class folder {wnid} of {root / name / str(severity)} is unknown")
        items.append((f"{wnid}/{Path(path).name}", classes[wnid]))
    keys = [key for key, _ in items]
    labels = [label for _, label in items]
    split = effective_split(cfg.data, "val")
    limit = cfg.data.get("limit")
    order = select_indices(keys, labels, split, None if limit is None else int(limit))
    return ImageFiles(root / name / str(severity), [items[i] for i in order], TF.to_tensor)


def corruption_report(path: str | Path) -> Report:
    """table.md, mce.png and corruptions.png of an eval-corruptions run folder: relative mCE per
    timestep (all / standard 15 / extra 4), AlexNet-normalised mCE, CE and accuracy per cell."""
    path = Path(path)
    cfg = OmegaConf.load(path / "config.yaml")
    resamples, level, seed = _intervals(cfg)
    df = pd.read_csv(path / "metrics.csv")
    present = set(df["corruption"])
    names = [c for c in ALL_CORRUPTIONS if c in present] + sorted(present - set(ALL_CORRUPTIONS))
    severities = sorted(int(s) for s in df["severity"].unique())
    _, correct = _corruption_cube(path, names, severities)
    n, timesteps = correct.shape[0], correct.shape[-1] - 1
    scale = len(SEVERITIES) / len(severities)
    standard = [i for i, c in enumerate(names) if c in ALEXNET_ERR]
    extra = [i for i, c in enumerate(names) if c not in ALEXNET_ERR]
    errors = 1.0 - correct.mean(axis=0)  # (corruption, severity, timestep)
    boot = 1.0 - bootstrap_means(correct, resamples, seed)
    pct = f"{level:.0%}"
    stats = _mce_stats(errors, boot, names, len(severities), level)
    alexnet = stats.pop("standard_mce", None)
    if alexnet is not None:
        alexnet = {k: 100 * v for k, v in alexnet.items()}
    labels = {
        "relative_mce": f"relative mCE, all {len(names)}",
        "standard_relative_mce": f"relative mCE, standard {len(standard)}",
        "extra_relative_mce": f"relative mCE, extra {len(extra)}",
    }
    summary_stats = {labels[k]: v for k, v in stats.items()}

    lines = [
        f"# eval-corruptions: {cfg.backbone.name}, corruption error per timestep",
        "",
        *_describe(cfg, n),
        f"- corruptions: {len(names)} ({len(standard)} standard, {len(extra)} extra) x "
        f"severities {', '.join(map(str, severities))}; source: {cfg.corruptions.source}"
        + (f" ({cfg.corruptions.root})" if cfg.corruptions.source == "folder" else ""),
        f"- intervals: {pct} percentile bootstrap over images ({resamples} resamples), the "
        "same resampled images for every corruption, severity and timestep",
        "- CE_c(t) = sum over severities of the top-1 error rate; relative mCE(t) = mean over "
        "corruptions of CE_c(t) / CE_c(0) (the Predify reference code; 1 at t=0, lower is better)",
        "- standard mCE = mean over the standard corruptions of CE_c / CE_c(AlexNet) "
        "(Hendrycks & Dietterich; lower is better)",
    ]
    if len(severities) != len(SEVERITIES):
        lines.append(
            "- only some severities were run: the standard mCE here is the mean error over "
            f"severities {', '.join(map(str, severities))} divided by AlexNet's error averaged "
            "over all 5, an approximation of the standard number"
        )
    if len(standard) not in (0, len(ALEXNET_ERR)):
        lines.append(
            f"- only {len(standard)} of the {len(ALEXNET_ERR)} standard corruptions were run: "
            "the standard mCE is over those alone and is not comparable to published numbers"
        )
    if any(np.isinf(s["high"]).any() for s in stats.values()):
        lines.append(
            "- an interval bound of inf: in some resamples the feedforward network (t=0) made no "
            "error on a corruption, so CE(t)/CE(0) is unbounded; more images tighten it"
        )
    lines += ["", f"## mCE per timestep ({pct} intervals)", ""]
    header = ["t", *summary_stats]
    if alexnet is not None:
        header.append("standard mCE vs AlexNet (%)")
    body = []
    for t in range(timesteps + 1):
        row = [str(t)]
        row += [
            _interval_text(s["value"][t], s["low"][t], s["high"][t], ".3f")
            for s in summary_stats.values()
        ]
        if alexnet is not None:
            row.append(
                _interval_text(alexnet["value"][t], alexnet["low"][t], alexnet["high"][t], ".1f")
            )
        body.append(row)
    lines += [_markdown(header, body), ""]

    ce = errors.sum(axis=1)  # (corruption, timestep)
    boot_ce = boot.sum(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = ce / ce[:, :1]
        rel_low, rel_high = ratio_interval(boot_ce / boot_ce[..., :1], level)
    lines += [
        "## CE per corruption, relative to timestep 0 (CE_c(t) / CE_c(0))",
        "",
        "CE/AlexNet: the corruption's CE at t=0 divided by AlexNet's (standard corruptions only).",
        "",
    ]
    header = [
        "corruption",
        "group",
        "CE/AlexNet t=0",
        *[f"t={t}" for t in range(1, timesteps)],
        f"t={timesteps} [{pct}]" if timesteps else "t=0",
    ]
    body = []
    for i, name in enumerate(names):
        alex = ALEXNET_ERR.get(name)
        alex_text = f"{100 * ce[i, 0] * scale / (len(SEVERITIES) * alex):.1f}%" if alex else "-"
        row = [name, "standard" if alex else "extra", alex_text]
        row += [f"{relative[i, t]:.3f}" for t in range(1, timesteps)]
        row.append(
            _interval_text(relative[i, -1], rel_low[i, -1], rel_high[i, -1], ".3f")
            if timesteps
            else "1.000"
        )
        body.append(row)
    lines += [_markdown(header, body), ""]

    accuracy = 100 * correct.mean(axis=0)  # (corruption, severity, timestep)
    lines += [f"## Top-1 accuracy (%) per corruption and severity, t=0 and t={timesteps}", ""]
    header = ["corruption", *[f"s{s}: t=0 -> t={timesteps}" for s in severities]]
    body = [
        [
            name,
            *[
                f"{accuracy[i, j, 0]:.1f} -> {accuracy[i, j, -1]:.1f}"
                for j in range(len(severities))
            ],
        ]
        for i, name in enumerate(names)
    ]
    lines += [_markdown(header, body), "", "Figures: mce.png, corruptions.png", ""]

    figures = [
        _mce_figure(path / "mce.png", cfg, summary_stats, alexnet, n, pct, severities),
        _grid_figure(path / "corruptions.png", cfg, names, severities, accuracy, relative, n),
    ]
    first = next(iter(summary_stats.items()))
    summary = [
        f"{first[0]} at t={timesteps}: "
        + _interval_text(first[1]["value"][-1], first[1]["low"][-1], first[1]["high"][-1], ".3f")
        + " (t=0 = 1)"
    ]
    if alexnet is not None:
        summary.append(
            f"standard mCE vs AlexNet: t=0 {alexnet['value'][0]:.1f}% -> t={timesteps} "
            + _interval_text(alexnet["value"][-1], alexnet["low"][-1], alexnet["high"][-1], ".1f")
            + "%"
        )
    _write_text(path / "table.md", "\n".join(lines))
    return Report("\n".join(lines), summary, figures)


def mce_summary(
    correct,
    corruptions: Sequence[str],
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per timestep, with bootstrap (low, high): relative mCE over all corruptions, over the
    standard and the extra ones apart (when both are present), and the AlexNet-normalised mCE of
    the standard ones. correct: (image, corruption, severity, timestep). With all 5 severities
    this agrees with metrics.mce_intervals; with fewer, the AlexNet mCE is the mean error over
    the severities run divided by AlexNet's severity-averaged error (an approximation)."""
    correct = np.asarray(correct)
    errors = 1.0 - correct.mean(axis=0)
    boot = 1.0 - bootstrap_means(correct, n_resamples, seed)
    table = pd.DataFrame({"timestep": np.arange(errors.shape[-1])})
    for name, stat in _mce_stats(errors, boot, list(corruptions), correct.shape[2], level).items():
        table[name], table[f"{name}_low"], table[f"{name}_high"] = (
            stat["value"],
            stat["low"],
            stat["high"],
        )
    return table


def _mce_stats(
    errors: np.ndarray, boot: np.ndarray, names: list[str], n_severities: int, level: float
) -> dict[str, dict]:
    """{statistic: {value, low, high}} per timestep from errors (corruption, severity, timestep)
    and their bootstrap resamples (resample, corruption, severity, timestep)."""
    standard = [i for i, c in enumerate(names) if c in ALEXNET_ERR]
    extra = [i for i, c in enumerate(names) if c not in ALEXNET_ERR]

    def stat(fn: Callable, idx: list[int] | None = None) -> dict:
        pick = (lambda e: e) if idx is None else (lambda e: e[..., idx, :, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            samples = fn(pick(boot))
        low, high = ratio_interval(samples, level)
        return {"value": fn(pick(errors)), "low": low, "high": high}

    stats = {"relative_mce": stat(relative_mce)}
    if standard and extra:
        stats["standard_relative_mce"] = stat(relative_mce, standard)
        stats["extra_relative_mce"] = stat(relative_mce, extra)
    if standard:
        scale = len(SEVERITIES) / n_severities
        names_std = [names[i] for i in standard]
        stats["standard_mce"] = stat(lambda e: standard_mce(e * scale, names_std), standard)
    return stats


def ratio_interval(samples, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """percentile_interval of bootstrap ratios that may be +inf (a resample whose denominator,
    e.g. the feedforward CE, is 0): such bounds are inf instead of NaN."""
    samples = np.asarray(samples, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low, high = percentile_interval(samples, level)
    unbounded = np.isposinf(samples).any(axis=0)
    return np.where(np.isnan(low) & unbounded, np.inf, low), np.where(
        np.isnan(high) & unbounded, np.inf, high
    )


def _corruption_cube(
    path: Path, names: Sequence[str], severities: Sequence[int]
) -> tuple[list[str], np.ndarray]:
    """Per-image correctness (image, corruption, severity, timestep) over the images that every
    cell has (all of them, unless cells of a folder tree hold different files)."""
    cells = {
        (name, s): load_cell_images(path / IMAGES / corruption_file(name, s))
        for name in names
        for s in severities
    }
    common = set.intersection(*(set(keys) for keys, _, _ in cells.values()))
    if not common:
        raise PcnetsError(f"{path}: the corruption cells share no image")
    order = sorted(common)
    timesteps = next(iter(cells.values()))[2].shape[1]
    cube = np.zeros((len(order), len(names), len(severities), timesteps), dtype=bool)
    for (name, s), (keys, _, correct) in cells.items():
        where = {k: i for i, k in enumerate(keys)}
        rows = [where[k] for k in order]
        cube[:, names.index(name), list(severities).index(s)] = correct[rows]
    return order, cube


def _mce_figure(target, cfg, stats: dict, alexnet, n: int, pct: str, severities) -> Path:
    curves = [Curve(label, s["value"], s["low"], s["high"]) for label, s in stats.items()]
    panels = [
        Panel(
            "mCE relative to timestep 0",
            curves,
            ylabel="mean of CE(t) / CE(0)  (lower = more robust)",
            reference=1.0,
            reference_label="feedforward (t=0)",
        )
    ]
    if alexnet is not None:
        panels.append(
            Panel(
                "Standard mCE (AlexNet-normalised)",
                [Curve("standard corruptions", alexnet["value"], alexnet["low"], alexnet["high"])],
                ylabel="mCE vs AlexNet (%)  (lower = more robust)",
            )
        )
    return save_panels(
        target,
        panels,
        f"{cfg.backbone.name} on ImageNet-C: mCE per timestep ({n} images, severities "
        f"{', '.join(map(str, severities))})",
        note=f"Bands: {pct} bootstrap intervals over images (a band at the top edge is unbounded). "
        "t=0 is the feedforward network; t>0 adds predictive-coding feedback.",
    )


def _grid_figure(target, cfg, names, severities, accuracy, relative, n: int) -> Path:
    panels = [
        Panel(
            f"{name} (CE ratio t={accuracy.shape[-1] - 1}: {relative[i, -1]:.3f})",
            [
                Curve(f"severity {s}", accuracy[i, j], style={"color": _severity_color(s)})
                for j, s in enumerate(severities)
            ],
            ylabel="top-1 accuracy (%)",
        )
        for i, name in enumerate(names)
    ]
    return save_grid(
        target,
        panels,
        f"{cfg.backbone.name}: top-1 accuracy per corruption and timestep ({n} images)",
        note="Title: CE at the last timestep / CE at t=0 (below 1 = feedback helps). "
        "t=0 is the feedforward network.",
    )


def _severity_color(severity: int) -> str:
    return {1: "#fdae61", 2: "#f46d43", 3: "#d73027", 4: "#a50026", 5: "#4d0013"}.get(
        int(severity), "C0"
    )


# ---- text helpers ---------------------------------------------------------------------------


def _describe(cfg: DictConfig, n: int) -> list[str]:
    pc, data = cfg.pc, cfg.data
    decoders = f"`{pc.decoders}`" if pc.get("decoders") else "none given: untrained (random)"
    hyper = (
        f"`{pc.hyper}`" if pc.get("hyper") else f"beta={pc.beta}, lambda={pc.lam}, alpha={pc.alpha}"
    )
    where = f"data.split={data.get('split', 'all')}" + (
        f", data.limit={data.limit}" if data.get("limit") is not None else ""
    )
    return [
        f"- images: {n} ({where})",
        f"- dynamics: timesteps 0..{pc.timesteps}, {hyper}, error_reduction={pc.error_reduction}, "
        f"gradient_scaling={pc.gradient_scaling}",
        f"- decoders: {decoders}",
    ]


def _interval_text(value: float, low: float, high: float, fmt: str) -> str:
    return f"{value:{fmt}} [{low:{fmt.lstrip('+')}}, {high:{fmt.lstrip('+')}}]"


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
