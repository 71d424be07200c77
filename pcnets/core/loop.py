"""The timestep loop of METHOD.md section 2 (``PredictiveNet.steps``): the run's constants, then
one backbone pass per timestep (core/timestep.py) while the encoder hooks make each e_n(t)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from pcnets.core.guards import ALPHA_NORMALIZATIONS, REDUCTIONS, check_choice
from pcnets.core.kernels import decoder_plan
from pcnets.core.run_state import Hyper, RunSlot, RunState, Step
from pcnets.core.timestep import timestep

# The run options that default to the net's own attributes, and their allowed values.
OPTIONS = {
    "error_reduction": REDUCTIONS,
    "gradient_scaling": (False, True),
    "random_init": (False, True),
    "alpha_normalization": ALPHA_NORMALIZATIONS,
}


def options(defaults: dict, given: dict) -> dict:
    """The run's options: ``given`` (None = the default) over ``defaults``, each checked."""
    unknown = set(given) - set(OPTIONS)
    if unknown:
        raise TypeError(f"unknown run options {sorted(unknown)}; known: {list(OPTIONS)}")
    merged = {k: defaults[k] if given.get(k) is None else given[k] for k in OPTIONS}
    return {k: check_choice(k, v, OPTIONS[k]) for k, v in merged.items()}


def start(
    decoders: nn.ModuleList,
    names: Sequence[str],
    hyper: Hyper,
    opts: dict,
    graph: bool,
    window: Tensor | None,
    adjoint: Callable,
    fast_kernels: bool = True,
    plans: list | None = None,
) -> RunState:
    """The RunState of a new run with the checked ``opts``. With a ``graph`` the coefficients
    stay tensors and every prediction and gradient is made (by autograd unless ``plans`` are
    given); without one they become Python numbers (one device sync) and only what the update
    uses is made."""
    n = len(names)
    lam_eff = hyper.lam.detach().clone()
    lam_eff[-1] = 0.0  # the top encoder has no feedback: its share is 1 - beta
    if graph:
        beta, lam, memory, alpha = hyper.beta, hyper.lam, None, hyper.alpha
        plans = plans or [None] * n
        need_pred, need_grad = [True] * n, [True] * n
    else:
        memory = 1 - hyper.beta.detach() - lam_eff  # float32, as pc_update computes it
        coefs = torch.stack([hyper.beta.detach(), hyper.lam.detach(), memory, hyper.alpha.detach()])
        beta, lam, memory, alpha = coefs.cpu().tolist()
        plans = [decoder_plan(d, fast_kernels) for d in decoders]
        need_pred = [i > 0 and lam[i - 1] != 0 for i in range(n)]
        need_grad = [a != 0 for a in alpha]
    return RunState(
        decoders=decoders,
        names=names,
        hyper=hyper,
        reduction=opts["error_reduction"],
        graph=graph,
        random_init=bool(opts["random_init"]),
        beta=beta,
        lam=lam,
        memory=memory,
        alpha=alpha,
        dtype=hyper.alpha.dtype,
        window=None if window is None else window.tolist(),
        plans=plans,
        adjoint=adjoint,
        need_pred=need_pred,
        need_grad=need_grad,
        relative=opts["alpha_normalization"] == "relative",
    )


def iterate(
    slot: RunSlot,
    backbone: nn.Module,
    s: RunState,
    e0: Tensor,
    timesteps: int,
    states: bool = False,
    terms: bool = False,
) -> Iterator[Step]:
    """One Step per timestep 0..T. Predictions after the last timestep are made only when the
    errors are asked for (s.want_errors)."""
    grad_mode = torch.enable_grad() if s.graph else torch.no_grad()
    s.want_terms = terms
    for t in range(timesteps + 1):
        s.begin(t, e0, feedback=t < timesteps or s.want_errors)
        with grad_mode:
            logits = timestep(slot, backbone, s, e0)
        yield Step(
            t,
            logits,
            states=list(s.e) if states else None,
            errors=list(s.errors) if s.want_errors else None,
            terms=torch.stack(s.terms) if terms and t > 0 else None,
        )
        s.advance()
