"""Adversarial attacks through the unrolled dynamics (METHOD.md section 7 item 3), with the checks
that catch masked gradients.

The attacked model at timestep T is the PredictiveNet unrolled to T (``UnrolledModel``): its
output is the logits at T, and the input gradient flows through every timestep and through the
error-gradient term (double backward through the decoders). torchattacks' BIM, PGD and FGSM work
on [0, 1] pixels with an L-infinity budget eps; the PredictiveNet normalises inside.

A run (``run_attack``) selects images classified correctly at every timestep 0..max(T), attacks
them at every (eps, T) cell (resumable, torchrun-sharded), evaluates the adversarial images made on
the feedforward model (T = 0) at every T as a transfer attack, and runs the sanity checks
(``model_checks``, ``result_checks``) whose failures are reported as WARNING lines.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError, suggest
from pcnets.runtime.devices import resolve_device
from pcnets.runtime.distributed import (
    all_reduce_sum,
    init_distributed,
    rank,
    shard_indices,
    world_size,
)
from pcnets.runtime.runs import Run, cell_key

ATTACKS = ("bim", "pgd", "fgsm")
SELECTION = "selection.json"
CHECKS = "checks.json"
NO_PATH = "no gradient path to the input"
ModelFactory = Callable[[PredictiveNet, int], nn.Module]
MEMORY_NOTE = (
    "peak memory of one attack batch above the level before it, divided by the batch size. "
    "CUDA: torch.cuda.max_memory_allocated. CPU (Linux): peak resident set size (VmHWM, reset "
    "through /proc/self/clear_refs after malloc_trim), an estimate that includes allocator slack."
)


# ---- the attacked models -----------------------------------------------------------------------


class _Frozen(nn.Module):
    """A wrapper that is always in eval mode with frozen parameters.

    torchattacks puts a model back in the mode it found it in, and nn.Module starts in training
    mode: without this, the first attack would leave the backbone's BatchNorm in training mode.
    """

    def __init__(self, pnet: PredictiveNet):
        super().__init__()
        self.pnet = pnet.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> _Frozen:
        """Ignore requests for training mode: BatchNorm must keep its running statistics."""
        return super().train(False)


class UnrolledModel(_Frozen):
    """[0, 1] pixels -> logits at timestep T of the dynamics, differentiable through every step.

    The PredictiveNet's parameters are frozen (gradients w.r.t. the input only) and it stays in
    eval mode. The forward keeps autograd on even under no_grad, as some torchattacks paths need.
    """

    def __init__(self, pnet: PredictiveNet, timesteps: int, **run_kwargs):
        super().__init__(pnet)
        self.timesteps = int(timesteps)
        self.run_kwargs = run_kwargs

    def forward(self, x: Tensor) -> Tensor:
        with torch.enable_grad():
            return self.pnet.run(x, self.timesteps, differentiable=True, **self.run_kwargs)[-1]


class FeedforwardModel(_Frozen):
    """[0, 1] pixels -> the plain feedforward logits (no PC machinery): the t=0 reference."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.enable_grad():
            return self.pnet(x)


# ---- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckSpec:
    """Settings of the sanity checks (attack.checks)."""

    num_images: int = 4  # images (the first of the selection) for the model checks
    large_eps: float = 0.1  # the attack must succeed on (almost) every image at this eps
    min_success: float = 0.9  # ... namely on at least this share of them
    tolerance: float = 0.0  # success-rate slack of the monotonicity and transfer checks
    t0_mismatch: float = 1e-3  # share of pixels allowed to differ, t=0 vs feedforward attack


@dataclass(frozen=True)
class AttackSpec:
    """What to attack and how (attack.* of the config), checked on construction."""

    name: str = "bim"
    eps: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008)
    steps: int = 10
    step_size: float | None = None
    random_start: bool = False
    timesteps: tuple[int, ...] = (0, 2, 4)
    targeted: bool = True
    target_offset: int = 800
    num_images: int = 1000
    select: str = "correct"
    batch_size: int = 16
    seed: int = 0
    checks: CheckSpec = field(default_factory=CheckSpec)

    def __post_init__(self) -> None:
        name = str(self.name)
        if name not in ATTACKS:
            raise PcnetsError(
                f"unknown attack {name!r}{suggest(name, ATTACKS)}; use attack=bim, pgd or fgsm"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "eps", tuple(sorted(set(parse_eps(list(self.eps))))))
        steps = _whole(self.steps, "attack.steps", 1)
        object.__setattr__(self, "steps", 1 if name == "fgsm" else steps)
        if self.step_size is not None:
            size = _number(self.step_size, "attack.step_size")
            if not 0 < size <= 1:
                raise PcnetsError(
                    f"attack.step_size must be in (0, 1] (pixel scale) or null, got {size}"
                )
            object.__setattr__(self, "step_size", size)
        for key in ("random_start", "targeted"):
            if not isinstance(getattr(self, key), bool):
                raise PcnetsError(f"attack.{key} must be true or false, got {getattr(self, key)!r}")
        if name == "fgsm" and self.random_start:
            raise PcnetsError("FGSM has no random start: set attack.random_start=false")
        timesteps = [_whole(t, "attack.timesteps", 0) for t in _as_list(self.timesteps)]
        if not timesteps:
            raise PcnetsError("attack.timesteps must list at least one timestep, e.g. [0, 2, 4]")
        object.__setattr__(self, "timesteps", tuple(sorted({0, *timesteps})))
        object.__setattr__(
            self, "target_offset", _whole(self.target_offset, "attack.target_offset", 1)
        )
        object.__setattr__(self, "num_images", _whole(self.num_images, "attack.num_images", 1))
        if self.select not in ("correct", "any"):
            raise PcnetsError(f"attack.select must be correct or any, got {self.select!r}")
        object.__setattr__(self, "batch_size", _whole(self.batch_size, "attack.batch_size", 1))
        c = self.checks
        _whole(c.num_images, "attack.checks.num_images", 1)
        for key, low_open in (
            ("large_eps", True),
            ("min_success", False),
            ("tolerance", False),
            ("t0_mismatch", False),
        ):
            value = _number(getattr(c, key), f"attack.checks.{key}")
            if not (0 < value <= 1 if low_open else 0 <= value <= 1):
                span = "(0, 1]" if low_open else "[0, 1]"
                raise PcnetsError(f"attack.checks.{key} must be in {span}, got {value}")

    @classmethod
    def from_config(cls, node: DictConfig | dict, seed: int = 0) -> AttackSpec:
        """The spec of a composed config's attack node (and the run's seed)."""
        data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        data = dict(data)
        if data.get("name") in (None, "???"):
            raise PcnetsError(
                "attack.name is not set; choose attack=bim, attack=pgd or attack=fgsm"
            )
        known = set(cls.__dataclass_fields__) - {"seed", "checks"}
        unknown = sorted(set(data) - known - {"checks"})
        if unknown:
            raise PcnetsError(
                f"unknown attack setting(s) {unknown}{suggest(unknown[0], known)}; "
                f"known: {sorted(known | {'checks'})}"
            )
        checks = dict(data.pop("checks", None) or {})
        bad = sorted(set(checks) - set(CheckSpec.__dataclass_fields__))
        if bad:
            raise PcnetsError(
                f"unknown attack.checks setting(s) {bad}; "
                f"known: {sorted(CheckSpec.__dataclass_fields__)}"
            )
        data["eps"] = tuple(parse_eps(data.get("eps", cls.eps)))
        data["timesteps"] = tuple(_as_list(data.get("timesteps", cls.timesteps)))
        return cls(**data, seed=int(seed), checks=CheckSpec(**checks))

    def alpha(self, eps: float) -> float:
        """The step size at this eps: attack.step_size, or 2.5 * eps / steps (FGSM: eps)."""
        if self.name == "fgsm":
            return eps
        return self.step_size if self.step_size is not None else 2.5 * eps / self.steps

    def describe(self) -> str:
        """The attack in one line, for table.md."""
        kind = f"targeted, target = (label + {self.target_offset}) mod classes"
        step = "2.5 eps / steps" if self.step_size is None else f"{self.step_size:g}"
        return (
            f"{self.name.upper()} (torchattacks), L-infinity on [0, 1] pixels, "
            f"{self.steps} step(s) of {step if self.name != 'fgsm' else 'eps'}, "
            f"random start {'on' if self.random_start else 'off'}, "
            f"{kind if self.targeted else 'untargeted'}"
        )


def _as_list(value) -> list:
    if OmegaConf.is_list(value):
        return list(value)
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _number(value, key: str) -> float:
    if isinstance(value, bool):
        raise PcnetsError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PcnetsError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise PcnetsError(f"{key} must be finite, got {value!r}")
    return number


def _whole(value, key: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise PcnetsError(f"{key} must be a whole number >= {low}, got {value!r}")
    return int(value)


def parse_eps(value) -> list[float]:
    """eps values in [0, 1] (L-infinity, [0, 1] pixel scale) from a number, a list, or a string
    like "0.004" / "0.001,0.002" / "8/255"; anything else is a PcnetsError."""
    items: list = []
    for item in _as_list(value):
        if isinstance(item, str):
            items += [part.strip() for part in item.split(",") if part.strip()]
        else:
            items.append(item)
    if not items:
        raise PcnetsError("give at least one eps, e.g. --eps 0.004 or attack.eps=[0.002,0.004]")
    values = []
    for item in items:
        try:
            eps = float(Fraction(item)) if isinstance(item, str) else _number(item, "eps")
        except (ValueError, ZeroDivisionError):
            raise PcnetsError(
                f"eps {item!r} is not a number; give e.g. 0.004, 1/255 or 0.001,0.002"
            ) from None
        if not 0 <= eps <= 1:
            raise PcnetsError(
                f"eps must be in [0, 1] (L-infinity budget on [0, 1] pixels, e.g. 0.004 or "
                f"8/255), got {eps:g}"
            )
        values.append(eps)
    return values


def target_labels(labels: Tensor, num_classes: int, offset: int) -> Tensor:
    """The reference code's targets: (label + offset) mod num_classes (offset 800 on ImageNet)."""
    if offset % num_classes == 0:
        raise PcnetsError(
            f"attack.target_offset={offset} maps every label to itself with {num_classes} "
            "classes; choose another offset"
        )
    return (labels + offset) % num_classes


# ---- one attack --------------------------------------------------------------------------------


def make_attack(model: nn.Module, spec: AttackSpec, eps: float):
    """The torchattacks attack for the spec at this eps (BIM with a random start is PGD: the two
    share the projection and differ only by the start)."""
    import torchattacks

    if spec.name == "fgsm":
        attack = torchattacks.FGSM(model, eps=eps)
    elif spec.name == "pgd" or spec.random_start:
        attack = torchattacks.PGD(
            model, eps=eps, alpha=spec.alpha(eps), steps=spec.steps, random_start=spec.random_start
        )
    else:
        attack = torchattacks.BIM(model, eps=eps, alpha=spec.alpha(eps), steps=spec.steps)
    if spec.targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    return attack


def attack_images(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    spec: AttackSpec,
    eps: float,
    seed: int,
    targets: Tensor | None = None,
) -> Tensor:
    """Adversarial versions of [0, 1] images; the random start is seeded (same seed, same images).

    Targeted specs need ``targets``; untargeted ones move away from ``labels``.
    """
    if spec.targeted and targets is None:
        raise ValueError("a targeted attack needs targets")
    if eps == 0:
        return images.detach().clone()
    attack = make_attack(model, spec, eps)
    devices = [images.device.index or 0] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        adv = attack(images, targets if spec.targeted else labels)
    return adv.detach()


def attack_loss(logits: Tensor, labels: Tensor, targets: Tensor | None, targeted: bool) -> Tensor:
    """What the attacks ascend: minus the CE to the target (targeted), else the CE to the label."""
    if targeted:
        return -F.cross_entropy(logits, targets, reduction="sum")
    return F.cross_entropy(logits, labels, reduction="sum")


def input_gradient(
    model: nn.Module, images: Tensor, labels: Tensor, targets: Tensor | None, targeted: bool
) -> Tensor | None:
    """d(attack loss)/d(images), or None when the model's output has no gradient path to them."""
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = attack_loss(model(x), labels, targets, targeted)
        if not loss.requires_grad:
            return None
        (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return grad


def succeeded(logits: Tensor, labels: Tensor, targets: Tensor | None, targeted: bool) -> Tensor:
    """Per image: predicted the target (targeted) or anything but the label (untargeted)."""
    pred = logits.argmax(1)
    return pred == targets if targeted else pred != labels


def batch_seed(seed: int, eps: float, batch: int) -> int:
    """The random-start seed of one batch of the selection at one eps: the same for every
    timestep (so t=0 equals the feedforward attack) and every process count."""
    digest = hashlib.sha256(f"attack/{seed}/{eps!r}/{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


# ---- memory ------------------------------------------------------------------------------------


class PeakMemory:
    """Peak memory above the level at entry while the block runs (bytes, in ``.peak``).

    CUDA: torch.cuda.max_memory_allocated. CPU (Linux): the process's peak resident set size
    (VmHWM, reset through /proc/self/clear_refs after malloc_trim returns freed heap memory), an
    estimate that includes the allocator's slack; elsewhere ru_maxrss, which only sees new highs.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak = 0
        self._start = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif _proc_status():
            _malloc_trim()
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            self._start = _proc_status()["VmRSS"]
        else:
            self._start = _maxrss()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            end = torch.cuda.max_memory_allocated(self.device)
        elif _proc_status():
            end = _proc_status()["VmHWM"]
        else:
            end = _maxrss()
        self.peak = max(0, end - self._start)


def _proc_status() -> dict[str, int]:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, flags=re.M))
    return {k: int(v) * 1024 for k, v in found.items()} if len(found) == 2 else {}


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _maxrss() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


# ---- image selection ---------------------------------------------------------------------------


@dataclass
class Selection:
    """The attacked images: dataset indices, keys and labels, in the (seeded) order chosen."""

    indices: list[int]
    keys: list[str]
    labels: list[int]
    examined: int
    max_timestep: int
    seed: int

    def save(self, path: Path) -> None:
        """Write selection.json atomically."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Selection:
        """Read a selection.json written by save."""
        return cls(**json.loads(path.read_text()))


def load_images(dataset: Dataset, indices: Sequence[int], device) -> tuple[Tensor, Tensor]:
    """A batch of [0, 1] images and their labels from dataset items."""
    items = [dataset[i] for i in indices]
    images = torch.stack([torch.as_tensor(img) for img, _ in items]).to(device)
    labels = torch.tensor([int(label) for _, label in items], device=device)
    return images, labels


def select_images(
    pnet: PredictiveNet,
    dataset: Dataset,
    count: int,
    max_timestep: int,
    seed: int,
    batch_size: int,
    device,
    progress: bool = True,
    require_correct: bool = True,
) -> Selection:
    """Up to ``count`` images, taken in a seeded random order, that the network classifies
    correctly at every timestep 0..max_timestep (the reference code's rule). Without
    ``require_correct`` any image qualifies (smoke runs with random weights)."""
    if len(dataset) == 0:
        raise PcnetsError("the dataset is empty; check data.split and data.limit")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen: list[int] = []
    examined = 0
    with tqdm(total=count, desc="selecting", unit="img", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            images, labels = load_images(dataset, batch, device)
            with torch.no_grad():
                logits = pnet.run(images, max_timestep)
            good = torch.stack([out.argmax(1) == labels for out in logits]).all(0)
            good = (good | (not require_correct)).tolist()
            examined += len(batch)
            for index, ok in zip(batch, good, strict=True):
                if ok and len(chosen) < count:
                    chosen.append(index)
                    bar.update(1)
            bar.set_postfix(examined=examined)
            if len(chosen) >= count:
                break
    if not chosen:
        raise PcnetsError(
            f"none of {examined} images is classified correctly at every timestep "
            f"0..{max_timestep}; check the backbone weights, pc.decoders and the data"
        )
    keys = _keys(dataset)
    return Selection(
        chosen, [keys[i] for i in chosen], _labels(dataset, chosen), examined, max_timestep, seed
    )


def _keys(dataset: Dataset) -> list[str]:
    return list(getattr(dataset, "keys", [str(i) for i in range(len(dataset))]))


def _labels(dataset: Dataset, indices: Sequence[int]) -> list[int]:
    """Labels from the dataset's targets list when it has one (no image decoding)."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(targets[i]) for i in indices]
    return [int(dataset[i][1]) for i in indices]


def _shared_selection(
    run: Run, pnet: PredictiveNet, dataset: Dataset, spec: AttackSpec, device, progress: bool
) -> Selection:
    """Rank 0 loads selection.json or selects and saves it; every process gets the indices."""
    path = run.path / SELECTION
    selection = None
    if run.writer:
        if path.is_file():
            selection = Selection.load(path)
            keys = _keys(dataset)
            stale = any(
                i >= len(keys) or keys[i] != k
                for i, k in zip(selection.indices, selection.keys, strict=True)
            )
            if stale:
                raise PcnetsError(
                    f"{path} names images that the dataset no longer holds at those positions; "
                    "delete the run folder or choose another --out"
                )
        else:
            selection = select_images(
                pnet,
                dataset,
                spec.num_images,
                max(spec.timesteps),
                spec.seed,
                spec.batch_size,
                device,
                progress,
                require_correct=spec.select == "correct",
            )
            selection.save(path)
    if world_size() == 1:
        return selection
    size = spec.num_images + 2
    packed = np.zeros(size, dtype=np.int64)
    if selection is not None:
        packed[0], packed[1] = len(selection.indices), selection.examined
        packed[2 : 2 + len(selection.indices)] = selection.indices
    packed = all_reduce_sum(packed)
    indices = [int(i) for i in packed[2 : 2 + int(packed[0])]]
    if selection is not None:
        return selection
    keys = _keys(dataset)
    return Selection(
        indices,
        [keys[i] for i in indices],
        _labels(dataset, indices),
        int(packed[1]),
        max(spec.timesteps),
        spec.seed,
    )


# ---- sanity checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One sanity check's outcome: its name, whether it passed, and what was measured."""

    name: str
    passed: bool
    detail: str


def model_checks(
    model_at: Callable[[int], nn.Module],
    feedforward: nn.Module,
    images: Tensor,
    labels: Tensor,
    spec: AttackSpec,
    targets: Tensor | None = None,
) -> list[Check]:
    """Checks on a few images that need the models: input gradients finite and non-zero at every
    attacked timestep, near-total success at a large eps, and t=0 equal to the feedforward attack.
    """
    c = spec.checks
    problems, norms, blocked = [], [], set()
    for t in spec.timesteps:
        grad = input_gradient(model_at(t), images, labels, targets, spec.targeted)
        if grad is None:
            problems.append(f"t={t}: {NO_PATH}")
            blocked.add(t)
            continue
        per_image = grad.detach().flatten(1).abs().sum(1)
        if not torch.isfinite(grad).all():
            problems.append(f"t={t}: non-finite values")
        zero = int((per_image == 0).sum())
        if zero:
            problems.append(f"t={t}: zero for {zero}/{len(per_image)} image(s)")
        norms.append(f"t={t} {float(per_image.min()):.3g}")
    checks = [
        Check(
            "gradients_finite_nonzero",
            not problems,
            "; ".join(problems) if problems else "smallest per-image L1 norm: " + ", ".join(norms),
        )
    ]

    t_max = max(spec.timesteps)
    if t_max in blocked:
        checks.append(Check("large_eps_succeeds", False, f"not run: t={t_max}: {NO_PATH}"))
    else:
        model = model_at(t_max)
        seed = batch_seed(spec.seed, c.large_eps, -1)
        adv = attack_images(model, images, labels, spec, c.large_eps, seed, targets)
        with torch.no_grad():
            hit = succeeded(model(adv).detach(), labels, targets, spec.targeted)
        checks.append(
            Check(
                "large_eps_succeeds",
                float(hit.float().mean()) >= c.min_success,
                f"eps={c.large_eps:g} at t={t_max}: {int(hit.sum())}/{len(hit)} succeeded "
                f"(need >= {c.min_success:.0%})",
            )
        )

    eps = max(spec.eps)
    if 0 in blocked:
        checks.append(Check("t0_equals_feedforward", False, f"not run: t=0: {NO_PATH}"))
    elif eps == 0:
        checks.append(Check("t0_equals_feedforward", True, "eps=0: nothing to compare"))
    else:
        seed = batch_seed(spec.seed, eps, -2)
        unrolled = attack_images(model_at(0), images, labels, spec, eps, seed, targets)
        plain = attack_images(feedforward, images, labels, spec, eps, seed, targets)
        diff = (unrolled - plain).abs()
        share = float((diff > 1e-6).float().mean())
        checks.append(
            Check(
                "t0_equals_feedforward",
                share <= c.t0_mismatch,
                f"eps={eps:g}: {share:.2%} of pixels differ (allowed {c.t0_mismatch:.2%}), "
                f"max |difference| {float(diff.max()):.3g}",
            )
        )
    return checks


def result_checks(metrics: pd.DataFrame, tolerance: float = 0.0) -> list[Check]:
    """Checks on a run's rows: the success rate never decreases with eps (per timestep), and the
    attack through the dynamics is never weaker than the transfer attack from the feedforward
    model (if it is, its gradients are masked: the robustness it shows is not real)."""
    direct = metrics[metrics["kind"] == "unrolled"]
    drops = []
    for t, rows in direct.groupby("timestep"):
        rates = rows.sort_values("eps")[["eps", "success_rate"]].to_numpy()
        for (e0, r0), (e1, r1) in zip(rates[:-1], rates[1:], strict=True):
            if r1 < r0 - tolerance:
                drops.append(f"t={int(t)}: {r0:.1%} at eps={e0:g} -> {r1:.1%} at eps={e1:g}")
    n_eps = direct["eps"].nunique()
    monotone = Check(
        "monotone_in_eps",
        not drops,
        _listing(drops)
        if drops
        else (f"{n_eps} eps values per timestep" if n_eps > 1 else "one eps: nothing to compare"),
    )
    transfer = metrics[metrics["kind"] == "transfer"]
    pairs = direct.merge(transfer, on=["eps", "timestep"], suffixes=("", "_transfer"))
    weaker = [
        f"eps={r.eps:g} t={int(r.timestep)}: {r.success_rate:.1%} < transfer "
        f"{r.success_rate_transfer:.1%}"
        for r in pairs.itertuples()
        if r.success_rate < r.success_rate_transfer - tolerance
    ]
    stronger = Check(
        "not_weaker_than_transfer",
        not weaker,
        f"{len(weaker)} of {len(pairs)} (eps, t) cells below transfer: {_listing(weaker)}"
        if weaker
        else f"{len(pairs)} (eps, t) cells: through the dynamics >= transfer from t=0",
    )
    return [monotone, stronger]


def _listing(items: Sequence[str], limit: int = 4) -> str:
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def warning_lines(checks: Sequence[Check]) -> list[str]:
    """One 'WARNING: ...' line per failed check."""
    return [f"WARNING: sanity check {c.name} failed: {c.detail}" for c in checks if not c.passed]


# ---- the run -----------------------------------------------------------------------------------


@dataclass
class AttackResult:
    """What run_attack made: the run folder, its rows, the checks, the selection, the report."""

    path: Path
    metrics: pd.DataFrame
    checks: list[Check]
    selection: Selection
    table: str = ""
    figures: list[Path] = field(default_factory=list)


def _device(cfg: DictConfig) -> torch.device:
    device = resolve_device(cfg.get("device", "auto"))
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _finished(run: Run, key: str) -> bool:
    """Rank 0 reads the run folder; every process learns whether the cell is done."""
    return all_reduce_sum(int(run.writer and run.is_done(key))) > 0


def run_attack(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    dataset: Dataset | None = None,
    model_at: ModelFactory | None = None,
    progress: bool = True,
) -> AttackResult:
    """`pcnets attack`: success rates per (eps, timestep) through the unrolled dynamics, the
    transfer attack from t=0, and the sanity checks; resumable and torchrun-sharded.

    ``pnet``/``dataset`` default to the config's. ``model_at(pnet, T)`` builds the attacked model
    (default UnrolledModel); it must give pnet.run's logits at T, since success is measured there.
    """
    spec = AttackSpec.from_config(cfg.attack, seed=int(cfg.get("seed", 0)))
    init_distributed()
    device = _device(cfg)
    if pnet is None:
        from pcnets.backbones import pnet_from_config

        pnet = pnet_from_config(cfg, device)
    pnet = pnet.to(device).eval().requires_grad_(False)
    if dataset is None:
        from pcnets.data import build_dataset

        dataset = build_dataset(cfg.data, pnet.transform, split="val")
    factory = model_at or UnrolledModel
    run = Run("attack", cfg)
    started = time.time()
    show = progress and run.writer

    if len(dataset) == 0:
        raise PcnetsError("the dataset is empty; check data.split and data.limit")
    with torch.no_grad():
        num_classes = int(pnet(load_images(dataset, [0], device)[0]).shape[1])
    if spec.targeted:
        target_labels(torch.zeros(1, dtype=torch.long), num_classes, spec.target_offset)
    selection = _shared_selection(run, pnet, dataset, spec, device, show)

    def targets_of(labels: Tensor) -> Tensor | None:
        return target_labels(labels, num_classes, spec.target_offset) if spec.targeted else None

    checks = _cached_model_checks(run, pnet, dataset, selection, spec, factory, device, targets_of)
    blocked = [c.detail for c in checks if NO_PATH in c.detail and c.name.startswith("grad")]
    if blocked:
        raise PcnetsError(f"the attacked model cannot be attacked: {blocked[0]}")
    if show:
        for line in warning_lines(checks):
            tqdm.write(line)

    n = len(selection.indices)
    batches = [list(range(s, min(s + spec.batch_size, n))) for s in range(0, n, spec.batch_size)]
    mine = [(b, batches[b]) for b in shard_indices(len(batches), rank(), world_size())]
    cells = [(t, eps) for t in spec.timesteps for eps in spec.eps]
    todo = [(t, eps) for t, eps in cells if not _finished(run, cell_key(eps=eps, timestep=t))]
    with tqdm(
        total=len(todo) * sum(len(b) for _, b in mine),
        desc="attack",
        unit="img",
        disable=not show,
    ) as bar:
        for t, eps in todo:
            bar.set_postfix(t=t, eps=f"{eps:g}")
            rows = _attack_cell(
                pnet,
                factory(pnet, t),
                dataset,
                selection,
                mine,
                spec,
                t,
                eps,
                device,
                targets_of,
                bar,
            )
            run.record(cell_key(eps=eps, timestep=t), rows)

    metrics = run.metrics()  # complete on rank 0 only: it alone reads the finished cells
    if run.writer:
        checks = checks + result_checks(metrics, spec.checks.tolerance)
    result = AttackResult(run.path, metrics, checks, selection)
    if run.writer:
        (run.path / CHECKS).write_text(json.dumps([asdict(c) for c in checks], indent=1))
        result.table = attack_table(
            metrics, checks, spec, selection, cfg, describe_dynamics(pnet, cfg)
        )
        run.write_text("table.md", result.table)
        result.figures = attack_figures(run.path, metrics, cfg)
    memory = _per_timestep(metrics, "peak_mb_per_image", max)
    run.finish(
        images=n,
        examined=selection.examined,
        wall_seconds=round(time.time() - started, 1),
        peak_mb_per_image=memory,
        memory_note=MEMORY_NOTE,
        checks={c.name: c.passed for c in checks},
        dynamics=describe_dynamics(pnet, cfg),
        device_used=str(device),
    )
    return result


def _cached_model_checks(
    run: Run,
    pnet: PredictiveNet,
    dataset: Dataset,
    selection: Selection,
    spec: AttackSpec,
    factory: ModelFactory,
    device,
    targets_of: Callable[[Tensor], Tensor | None],
) -> list[Check]:
    """model_checks on the first images of the selection; kept in checks.json for resumed runs."""
    path = run.path / CHECKS
    names = {"gradients_finite_nonzero", "large_eps_succeeds", "t0_equals_feedforward"}
    if run.writer and path.is_file():
        saved = [Check(**c) for c in json.loads(path.read_text())]
        if {c.name for c in saved} >= names:
            return [c for c in saved if c.name in names]
    count = min(spec.checks.num_images, len(selection.indices))
    images, labels = load_images(dataset, selection.indices[:count], device)
    checks = model_checks(
        lambda t: factory(pnet, t), FeedforwardModel(pnet), images, labels, spec, targets_of(labels)
    )
    if run.writer:
        path.write_text(json.dumps([asdict(c) for c in checks], indent=1))
    return checks


def _attack_cell(
    pnet: PredictiveNet,
    model: nn.Module,
    dataset: Dataset,
    selection: Selection,
    mine: list[tuple[int, list[int]]],
    spec: AttackSpec,
    t: int,
    eps: float,
    device,
    targets_of: Callable[[Tensor], Tensor | None],
    bar: tqdm,
) -> list[dict]:
    """Attack this process's batches at (eps, t); counts summed over processes. The t=0 cell also
    evaluates its images (made on the feedforward model) at every timestep: the transfer rows."""
    evaluated = spec.timesteps if t == 0 else (t,)
    counts = np.zeros((len(evaluated), 2), dtype=np.int64)  # success, fooled
    sums = np.zeros(3)  # images, sum of L-inf, sum of L2
    peak = 0.0
    start = time.time()
    for b, positions in mine:
        indices = [selection.indices[p] for p in positions]
        images, labels = load_images(dataset, indices, device)
        targets = targets_of(labels)
        with PeakMemory(device) as memory:
            adv = attack_images(
                model, images, labels, spec, eps, batch_seed(spec.seed, eps, b), targets
            )
        peak = max(peak, memory.peak / len(indices))
        with torch.no_grad():
            logits = pnet.run(adv, max(evaluated))
        for j, when in enumerate(evaluated):
            counts[j, 0] += int(succeeded(logits[when], labels, targets, spec.targeted).sum())
            counts[j, 1] += int((logits[when].argmax(1) != labels).sum())
        delta = (adv - images).flatten(1).double()
        sums += [len(indices), float(delta.abs().amax(1).sum()), float(delta.norm(dim=1).sum())]
        bar.update(len(indices))
    counts = all_reduce_sum(counts)
    sums = all_reduce_sum(sums)
    seconds = time.time() - start
    total = int(round(sums[0]))
    common = {
        "eps": eps,
        "total": total,
        "linf_mean": sums[1] / max(total, 1),
        "l2_mean": sums[2] / max(total, 1),
    }
    rows = []
    for j, when in enumerate(evaluated):
        row = {
            "kind": "unrolled" if when == t else "transfer",
            "timestep": when,
            "success": int(counts[j, 0]),
            "fooled": int(counts[j, 1]),
            "success_rate": counts[j, 0] / max(total, 1),
            **common,
        }
        if when == t:
            rows.append(
                {**row, "seconds": round(seconds, 2), "peak_mb_per_image": round(peak / 2**20, 1)}
            )
        if t == 0:
            rows.append({**row, "kind": "transfer", "seconds": None, "peak_mb_per_image": None})
    return rows


def _per_timestep(metrics: pd.DataFrame, column: str, how) -> dict:
    direct = metrics[metrics["kind"] == "unrolled"] if len(metrics) else metrics
    return (
        {int(t): how(rows[column]) for t, rows in direct.groupby("timestep")} if len(direct) else {}
    )


# ---- report ------------------------------------------------------------------------------------


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def _pivot(metrics: pd.DataFrame, kind: str, value: str) -> pd.DataFrame:
    rows = metrics[metrics["kind"] == kind]
    return rows.pivot_table(index="eps", columns="timestep", values=value, aggfunc="first")


def attack_table(
    metrics: pd.DataFrame,
    checks: Sequence[Check],
    spec: AttackSpec,
    selection: Selection,
    cfg: DictConfig,
    dynamics: str | None = None,
) -> str:
    """table.md: success rates per eps x timestep (through the dynamics, transfer, relative to
    t=0), cost per timestep, and every sanity check (failures as WARNING lines)."""
    n = len(selection.indices)
    lines = [
        f"# attack: {cfg.backbone.name}, success rate through the unrolled dynamics",
        "",
        f"- attack: {spec.describe()}; eps in {[float(f'{e:g}') for e in spec.eps]}",
        f"- images: {n}, drawn with seed {selection.seed} among those classified correctly at "
        f"every timestep 0..{selection.max_timestep} ({selection.examined} examined; "
        f"data split {cfg.data.get('split', 'all')}); the same images in every cell",
        f"- dynamics: {dynamics or describe_dynamics(None, cfg)}",
        "- through the dynamics: attacked with gradients through every timestep up to t (double "
        "backward through the decoders), evaluated at t. Transfer: the images attacked at t=0 "
        "(the feedforward model), evaluated at t. A lower rate at t than at t=0 is robustness "
        "only if the transfer rate at t is not higher than the rate through the dynamics.",
        "",
    ]
    if len(metrics) == 0:
        return "\n".join([*lines, "No cell finished yet.", ""])
    timesteps = sorted(metrics["timestep"].unique())
    header = ["eps", *[f"t={t}" for t in timesteps]]

    def table(frame: pd.DataFrame, fmt) -> str:
        body = [
            [f"{eps:g}", *[fmt(frame.loc[eps].get(t, float("nan"))) for t in timesteps]]
            for eps in frame.index
        ]
        return _markdown(header, body)

    def pct(v: float) -> str:
        return "-" if pd.isna(v) else f"{100 * v:.1f}"

    direct = _pivot(metrics, "unrolled", "success_rate")
    transfer = _pivot(metrics, "transfer", "success_rate")
    lines += ["## Success rate through the dynamics (%)", "", table(direct, pct), ""]
    lines += ["## Transfer from the feedforward model (%)", "", table(transfer, pct), ""]
    if 0 in direct.columns:
        relative = direct.div(direct[0].where(direct[0] > 0), axis=0)
        rel_t = transfer.div(transfer[0].where(transfer[0] > 0), axis=0)
        ratio = lambda v: "-" if pd.isna(v) else f"{v:.2f}"  # noqa: E731
        lines += [
            "## Relative to t=0 (success rate at t / at t=0)",
            "",
            "Through the dynamics:",
            "",
            table(relative, ratio),
            "",
            "Transfer from the feedforward model:",
            "",
            table(rel_t, ratio),
            "",
        ]
    lines += _verdict(metrics, spec.checks.tolerance)
    rows = metrics[metrics["kind"] == "unrolled"]
    cost = []
    for t, group in rows.groupby("timestep"):
        total = group["total"].clip(lower=1)
        cost.append(
            [
                f"t={int(t)}",
                f"{(group['seconds'] / total).mean():.2f}",
                f"{group['peak_mb_per_image'].max():.1f}",
                f"{group['linf_mean'].max():.4g}",
                f"{group['l2_mean'].max():.3g}",
            ]
        )
    lines += [
        "## Cost and perturbation size",
        "",
        _markdown(
            [
                "timestep",
                "seconds per image (cell wall time / images)",
                "peak MB per image",
                "max mean L-inf",
                "max mean L2",
            ],
            cost,
        ),
        "",
        f"Memory: {MEMORY_NOTE}",
        "",
        "## Sanity checks",
        "",
    ]
    lines += [f"- {'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in checks]
    warnings = warning_lines(checks)
    lines += ["", *warnings, ""] if warnings else ["", "All sanity checks passed.", ""]
    lines += ["Figures: success_vs_eps.png, relative_vs_timestep.png", ""]
    return "\n".join(lines)


def describe_dynamics(pnet: PredictiveNet | None, cfg: DictConfig) -> str:
    """The dynamics' settings in one line: the network's own when given, else the config's."""
    pc = cfg.get("pc", {})
    if pnet is None:
        values = {k: pc.get(k) for k in ("beta", "lam", "alpha")}
        numerics = (pc.get("error_reduction"), pc.get("gradient_scaling"))
    else:
        hyper = pnet.hyper()
        values = {k: _compact(getattr(hyper, k)) for k in ("beta", "lam", "alpha")}
        numerics = (pnet.error_reduction, pnet.gradient_scaling)
    return (
        f"beta {values['beta']}, lambda {values['lam']}, alpha {values['alpha']}, "
        f"error_reduction {numerics[0]}, gradient_scaling {numerics[1]}, "
        f"decoders {pc.get('decoders')}"
    )


def _compact(values: Tensor) -> str:
    items = [round(float(v), 4) for v in values.flatten()]
    return f"{items[0]:g}" if len(set(items)) == 1 else str(items)


def _verdict(metrics: pd.DataFrame, tolerance: float) -> list[str]:
    """A plain sentence per eps: does success fall from t=0 to the last t, and is the fall more
    than the transfer attack explains (else it is gradient masking). Counts of images shown."""
    lines = ["## Verdict per eps (t=0 vs the last timestep, in images)", ""]
    direct = _pivot(metrics, "unrolled", "success")
    transfer = _pivot(metrics, "transfer", "success")
    n = int(metrics["total"].max())
    t_max = max(direct.columns)
    if t_max == 0:
        return [*lines, "Only t=0 was attacked.", ""]
    slack = tolerance * n
    for eps in direct.index:
        d0, dt, tt = (
            int(v) for v in (direct.loc[eps, 0], direct.loc[eps, t_max], transfer.loc[eps, t_max])
        )
        if dt >= d0 - slack:
            text = f"no robustness gain: {dt}/{n} succeed at t={t_max}, {d0}/{n} at t=0"
        elif dt < tt - slack:
            text = (
                f"success falls from {d0}/{n} to {dt}/{n} at t={t_max}, but the transfer attack "
                f"reaches {tt}/{n}: gradient masking, not robustness"
            )
        else:
            text = (
                f"success falls from {d0}/{n} to {dt}/{n} at t={t_max}; the transfer attack "
                f"reaches {tt}/{n}, so the fall is not explained by masked gradients"
            )
        lines.append(f"- eps={eps:g}: {text}")
    lines += [
        "",
        f"Paired counts on {n} images: a difference of one image is {100 / n:.1f} percentage "
        "points; differences of a few images are within sampling noise.",
        "",
    ]
    return lines


def attack_figures(path: Path, metrics: pd.DataFrame, cfg: DictConfig) -> list[Path]:
    """success_vs_eps.png (one line per timestep) and relative_vs_timestep.png (one per eps),
    each with a panel through the dynamics and a panel for the transfer attack from t=0."""
    from pcnets.reporting.figures import Curve, Panel, save_panels

    if len(metrics) == 0:
        return []
    kinds = {"unrolled": "Attacked through the dynamics up to t", "transfer": "Transfer from t=0"}
    n = int(metrics["total"].max())
    name = cfg.backbone.name
    panels = []
    for kind, title in kinds.items():
        rates = _pivot(metrics, kind, "success_rate")
        curves = [
            Curve(f"t={t}", 100 * rates[t].to_numpy(), x=rates.index.to_numpy())
            for t in rates.columns
        ]
        panels.append(
            Panel(
                title,
                curves,
                xlabel="eps (L-infinity, [0, 1] pixel scale)",
                ylabel="attack success rate (%)",
                integer_x=False,
            )
        )
    figures = [
        save_panels(
            path / "success_vs_eps.png",
            panels,
            f"{name}: attack success rate vs eps ({n} images)",
            sharey=True,
        )
    ]
    panels = []
    for kind, title in kinds.items():
        rates = _pivot(metrics, kind, "success_rate")
        if 0 not in rates.columns:
            return figures
        relative = rates.div(rates[0].where(rates[0] > 0), axis=0)
        curves = [
            Curve(f"eps={eps:g}", relative.loc[eps].to_numpy(), x=relative.columns.to_numpy())
            for eps in relative.index
        ]
        panels.append(
            Panel(
                title,
                curves,
                ylabel="success rate at t / at t=0",
                reference=1.0,
                reference_label="t=0 level",
            )
        )
    figures.append(
        save_panels(
            path / "relative_vs_timestep.png",
            panels,
            f"{name}: attack success relative to t=0 ({n} images)",
            sharey=True,
            note="below 1: fewer successes than on the feedforward model (eps without t=0 "
            "successes are not drawn)",
        )
    )
    return figures
