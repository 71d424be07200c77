"""Learning beta, lambda and alpha per encoder (METHOD.md section 6; paper appendix A.7).

The backbone and the decoders stay frozen. Per encoder n, three raw parameters give
s_b, s_l, s_m = sigmoid(raw) and beta, lambda, memory = s_b, s_l, s_m / (s_b + s_l + s_m), so the
three shares are positive and sum to 1 (hence beta + lambda < 1). The top encoder has no feedback:
its lambda is fixed to 0 (beta, memory = s_b, s_m / (s_b + s_m)). alpha = softplus(raw_alpha) keeps
alpha >= 0; near 0 softplus is ~exp, so small alphas move on a log scale. Adam minimises the
cross-entropy of noisy images through the unrolled dynamics (differentiable run): at the last
timestep (objective=last, default) or averaged over timesteps 1..T (objective=mean).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from pcnets.core.pnet import Hyper, PredictiveNet
from pcnets.data import build_dataset
from pcnets.data.noise import add_noise
from pcnets.errors import PcnetsError, suggest
from pcnets.experiments.cells import open_session
from pcnets.reporting.tune import render
from pcnets.runtime.devices import switch
from pcnets.runtime.distributed import all_reduce_sum, rank, shard_indices, world_size
from pcnets.runtime.files import atomic_write
from pcnets.runtime.loading import num_workers
from pcnets.runtime.runs import Run, cell_key
from pcnets.runtime.session import Result

OBJECTIVES = ("last", "mean")
SHARE_FLOOR = 1e-7  # shares of exactly 0 map to this (a sigmoid never reaches 0)
HYPER_FORMAT = "pcnets-hyper-v1"
STATE_FILE = "tune_state.pt"
Values = Tensor | Sequence[float] | float  # one value per encoder (or one for all)


# ---- the parametrisation -------------------------------------------------------------------


def shares_from_raw(raw: Tensor, lam_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(beta, lambda, memory) from raw parameters of shape [3, N]: sigmoids normalised to sum 1;
    ``lam_mask`` [N] is 0 where lambda is fixed to 0 (the top encoder)."""
    s = torch.sigmoid(raw)
    s_b, s_l, s_m = s[0], s[1] * lam_mask, s[2]
    total = s_b + s_l + s_m
    return s_b / total, s_l / total, s_m / total


def raw_from_shares(beta: Values, lam: Values, lam_mask: Values | None = None) -> Tensor:
    """Raw parameters [3, N] (float64) whose shares are ``beta``, ``lam``, 1 - beta - lam.

    The sigmoids are scaled so that the largest share maps to 0.5 (raw 0, the steepest point);
    shares of 0 become SHARE_FLOOR. Needs 0 <= beta, lam and beta + lam <= 1 per encoder.
    """
    beta = torch.as_tensor(beta, dtype=torch.float64).flatten()
    lam = torch.as_tensor(lam, dtype=torch.float64).flatten()
    if lam_mask is not None:
        lam = lam * torch.as_tensor(lam_mask, dtype=torch.float64)
    if beta.shape != lam.shape:
        raise PcnetsError(f"beta and lam need the same length, got {len(beta)} and {len(lam)}")
    memory = 1.0 - beta - lam
    shares = torch.stack([beta, lam, memory])
    if (shares < -1e-6).any():
        raise PcnetsError(
            f"need beta, lam >= 0 and beta + lam <= 1, got beta {beta.tolist()}, lam {lam.tolist()}"
        )
    shares = shares.clamp(min=SHARE_FLOOR)
    s = 0.5 * shares / shares.max(dim=0).values
    return torch.log(s) - torch.log1p(-s)


def softplus_inverse(alpha: Values) -> Tensor:
    """The raw value whose softplus is ``alpha`` (float64; alpha = 0 maps to ~1e-12)."""
    a = torch.as_tensor(alpha, dtype=torch.float64).flatten()
    if (a < 0).any():
        raise PcnetsError(f"alpha must be >= 0, got {a.tolist()}")
    a = a.clamp(min=1e-12)
    return torch.where(a > 20, a, torch.log(torch.expm1(a)))


class HyperParams(nn.Module):
    """Learnable per-encoder beta, lambda (top encoder: 0) and alpha; ``forward()`` -> Hyper."""

    def __init__(self, beta: Values, lam: Values, alpha: Values, learn_alpha: bool = True):
        super().__init__()
        n = torch.as_tensor(beta).numel()
        mask = torch.ones(n)
        mask[-1] = 0.0
        self.register_buffer("lam_mask", mask)
        self.raw = nn.Parameter(raw_from_shares(beta, lam, mask).float())
        raw_alpha = softplus_inverse(alpha).float().expand(n).clone()
        if learn_alpha:
            self.raw_alpha = nn.Parameter(raw_alpha)
        else:
            self.register_buffer("raw_alpha", raw_alpha)

    @classmethod
    def from_pnet(cls, pnet: PredictiveNet, learn_alpha: bool = True) -> HyperParams:
        h = pnet.hyper()
        return cls(h.beta.detach().cpu(), h.lam.detach().cpu(), h.alpha.detach().cpu(), learn_alpha)

    def shares(self) -> tuple[Tensor, Tensor, Tensor]:
        """(beta, lambda, memory), each [N]."""
        return shares_from_raw(self.raw, self.lam_mask)

    def alpha(self) -> Tensor:
        return F.softplus(self.raw_alpha)

    def forward(self) -> Hyper:
        beta, lam, _ = self.shares()
        return Hyper(beta, lam, self.alpha())

    def values(self) -> dict[str, list[float]]:
        """Current values as plain lists (beta, lam, memory, alpha)."""
        with torch.no_grad():
            beta, lam, memory = self.shares()
            return {
                "beta": beta.tolist(),
                "lam": lam.tolist(),
                "memory": memory.tolist(),
                "alpha": self.alpha().tolist(),
            }


# ---- the objective -------------------------------------------------------------------------


def objective(
    pnet: PredictiveNet, x: Tensor, y: Tensor, timesteps: int, hyper: Hyper, kind: str = "last"
) -> tuple[Tensor, Tensor]:
    """(loss, logits at T) of [0,1] images x through the unrolled dynamics: CE at t = T (last) or
    the mean CE over t = 1..T (mean; t = 0 when T = 0), with the graph kept for ``hyper``."""
    check_objective(kind)
    logits = pnet.run(x, timesteps, differentiable=True, hyper=hyper)
    used = logits[-1:] if kind == "last" or timesteps == 0 else logits[1:]
    loss = torch.stack([F.cross_entropy(z.float(), y) for z in used]).mean()
    return loss, logits[-1].detach()


def check_objective(kind: str) -> str:
    """``kind`` if it names an objective (last, mean), else a PcnetsError with a hint."""
    if kind not in OBJECTIVES:
        raise PcnetsError(
            f"tune.objective must be one of {list(OBJECTIVES)}, got {kind!r}"
            f"{suggest(str(kind), OBJECTIVES)}"
        )
    return kind


def batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """The dataset indices of one tuning step: consecutive slices of a stream of per-epoch random
    permutations, so any step can be recomputed (resume) without replaying the others."""
    if n < 1:
        raise PcnetsError("tuning needs at least one image; check data.split / data.limit")
    out: list[int] = []
    pos = step * batch
    while len(out) < batch:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = perm[offset : offset + batch - len(out)].tolist()
        out += take
        pos += len(take)
    return out


# ---- the command ---------------------------------------------------------------------------


@dataclass
class TuneResult(Result):
    """What `pcnets tune` made: the Result (run folder, rows, printed lines), the tuned values
    (hyper.json's contents), and the run folder itself."""

    hyper: dict = field(default_factory=dict)
    run: Run | None = None


def _sigmas(value) -> list[float]:
    sigmas = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]
    sigmas = [float(s) for s in sigmas]
    if not sigmas or any(s < 0 or not math.isfinite(s) for s in sigmas):
        raise PcnetsError(f"tune.sigmas must be finite values >= 0, got {sigmas}")
    return sigmas


def tune_timesteps(cfg: DictConfig) -> int:
    """tune.timesteps, or pc.timesteps when it is null."""
    t = cfg.tune.get("timesteps")
    t = int(cfg.pc.timesteps if t is None else t)
    if t < 1:
        raise PcnetsError(f"tuning needs at least 1 timestep, got {t}")
    return t


def _rows(step: int, values: dict, names: list[str], **extra) -> list[dict]:
    return [
        {
            "step": step,
            "encoder": i + 1,
            "name": names[i],
            **{k: values[k][i] for k in ("beta", "lam", "memory", "alpha")},
            **extra,
        }
        for i in range(len(names))
    ]


def tune(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    run: Run | None = None,
    progress: bool = True,
    dataset: torch.utils.data.Dataset | None = None,
) -> TuneResult:
    """Learn beta, lambda, alpha for ``pnet`` (default: the config's) on noisy images of
    ``dataset`` (default: the config's training split); writes hyper.json, metrics.csv, table.md,
    tune.png and summary.csv into the run folder. Resumes from its last save."""
    if "tune" not in cfg:
        raise PcnetsError("the config has no tune group; compose with +tune=default")
    tc = cfg.tune
    kind = check_objective(str(tc.objective))
    sigmas = _sigmas(tc.sigmas)
    timesteps = tune_timesteps(cfg)
    steps, save_every, batch = int(tc.steps), max(1, int(tc.save_every)), int(tc.batch_size)
    session, pnet = open_session("tune", cfg, pnet)
    world = world_size()
    if batch < world:
        raise PcnetsError(f"tune.batch_size={batch} is smaller than the {world} processes")
    device = session.device
    for p in pnet.parameters():
        p.requires_grad_(False)
    session.run_folder = run = run or Run("tune", cfg)
    names = list(pnet.encoder_names)

    params = HyperParams.from_pnet(pnet, bool(tc.learn_alpha)).to(device)
    initial = params.values()
    optim = torch.optim.Adam(params.parameters(), lr=float(tc.lr))
    start = 0
    state_path = run.path / STATE_FILE
    if state_path.is_file():  # resume: the values and Adam's moments after `step` steps
        state = torch.load(state_path, map_location=device)
        params.load_state_dict(state["params"])
        optim.load_state_dict(state["optim"])
        initial, start = state["initial"], min(int(state["step"]), steps)

    if dataset is None:
        dataset = build_dataset(cfg.data, pnet.transform, split="train")
    seed = int(cfg.seed)
    # tune.batch_size images per step in all; under torchrun each process takes a slice of them
    mine = shard_indices(batch, rank(), world)
    plan = [batch_indices(len(dataset), batch, s, seed) for s in range(start, steps)]
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=[[b[i] for i in mine] for b in plan],
        num_workers=num_workers(cfg.data.get("workers", "auto"), device),
        pin_memory=switch(cfg.data.get("pin_memory", "auto"), device),
    )
    pending: list[dict] = []
    show = progress and run.writer
    bar = tqdm(total=steps, initial=start, desc="tune", unit="step", disable=not show)
    for step, (x, y) in enumerate(session.batches(loader), start=start):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        sigma = sigmas[int(torch.randint(len(sigmas), (1,), generator=gen))]
        noise = torch.randn((batch, *x.shape[1:]), generator=gen)[mine.start : mine.stop]
        y = y.to(device, non_blocking=True)
        noisy = add_noise(x, sigma, std=pnet.std, noise=noise)
        values = params.values()
        with session.autocast():
            loss, last = objective(pnet, noisy, y, timesteps, params(), kind)
        share = loss * (len(y) / batch)  # this process's part of the mean over the whole batch
        optim.zero_grad(set_to_none=True)
        share.backward()
        for p in params.parameters():
            if p.grad is not None:
                p.grad = all_reduce_sum(p.grad)
        optim.step()
        hits = int((last.argmax(1) == y).sum())
        loss_all, correct = all_reduce_sum([float(share.detach()), hits])
        pending += _rows(
            step, values, names, loss=loss_all, sigma=sigma, correct=int(correct), total=batch
        )
        bar.update(1)
        bar.set_postfix(loss=f"{loss_all:.3f}", sigma=sigma)
        if (step + 1) % save_every == 0 or step + 1 == steps:
            run.record(cell_key(steps_to=step + 1), pending)
            pending = []
            if run.writer:
                _save_state(state_path, params, optim, step + 1, initial)
    bar.close()
    final = params.values()
    if not run.is_done(cell_key(final=True)):
        run.record(cell_key(final=True), _rows(steps, final, names))
    hyper = _hyper_file(cfg, pnet, run, final, initial, timesteps, sigmas, kind)
    path = run.write_text("hyper.json", json.dumps(hyper, indent=2) + "\n")
    summary = render(run.path) if run.writer else []
    session.finish(hyper=str(path))
    summary.append(f"wrote {path} (use it with pc.hyper={path})")
    return TuneResult(run.path, run.metrics(), summary, {"hyper_file": path}, hyper=hyper, run=run)


def _save_state(path: Path, params: HyperParams, optim, step: int, initial: dict) -> None:
    """The values and Adam's moments after ``step`` steps, written atomically (the resume point)."""
    state = {"params": params.state_dict(), "optim": optim.state_dict()}
    buffer = io.BytesIO()
    torch.save({**state, "step": step, "initial": initial}, buffer)
    atomic_write(path, buffer.getvalue())


def loss_summary(metrics: pd.DataFrame) -> tuple[float | None, float | None, dict]:
    """The mean objective over the first and the last quarter of the steps, overall and per
    sigma ({sigma: [first, last]}): single steps are too noisy to compare (small batches)."""
    losses = metrics.dropna(subset=["loss"]).drop_duplicates("step").sort_values("step")
    if losses.empty:
        return None, None, {}
    quarter = max(1, len(losses) // 4)
    head, tail = losses.head(quarter), losses.tail(quarter)
    by_sigma = {}
    for sigma, part in losses.groupby("sigma"):
        q = max(1, len(part) // 4)
        by_sigma[f"{sigma:g}"] = [
            float(part["loss"].head(q).mean()),
            float(part["loss"].tail(q).mean()),
        ]
    return float(head["loss"].mean()), float(tail["loss"].mean()), by_sigma


def _hyper_file(cfg, pnet, run, final, initial, timesteps, sigmas, kind) -> dict:
    first, last, by_sigma = loss_summary(run.metrics())
    return {
        "format": HYPER_FORMAT,
        "backbone": pnet.name,
        "encoders": list(pnet.encoder_names),
        "beta": final["beta"],
        "lam": final["lam"],
        "alpha": final["alpha"],
        "memory": final["memory"],
        "initial": {k: initial[k] for k in ("beta", "lam", "alpha")},
        "objective": kind,
        "timesteps": timesteps,
        "sigmas": sigmas,
        "steps": int(cfg.tune.steps),
        "batch_size": int(cfg.tune.batch_size),
        "lr": float(cfg.tune.lr),
        "first_loss": first,
        "final_loss": last,
        "loss_by_sigma": by_sigma,
        "error_reduction": pnet.error_reduction,
        "gradient_scaling": bool(pnet.gradient_scaling),
        "decoders": cfg.pc.get("decoders"),
        "data": {k: cfg.data.get(k) for k in ("kind", "root", "split", "limit")},
        "config_hash": run.hash,
        "run": str(run.path),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


run = tune  # the entry point every command module has: run(cfg) -> Result
