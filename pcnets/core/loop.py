"""The timestep loop of METHOD.md section 2 (``PredictiveNet.steps``): check the options, set up
the run's state, and run the backbone once per timestep while the encoder hooks (core/hooks.py)
turn each encoder's output into e_n(t)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pcnets.core.guards import check_finite, check_reduction, check_timesteps
from pcnets.core.hooks import fast_constants
from pcnets.core.run_state import Hyper, Step, _RunState
from pcnets.errors import PcnetsError

if TYPE_CHECKING:
    from pcnets.core.pnet import PredictiveNet


def steps(
    pnet: PredictiveNet,
    x: Tensor,
    timesteps: int = 10,
    *,
    error_reduction: str | None = None,
    gradient_scaling: bool | None = None,
    random_init: bool | None = None,
    differentiable: bool = False,
    states: bool = False,
    errors: bool = False,
    hyper: Hyper | None = None,
) -> Iterator[Step]:
    """Iterate the dynamics, yielding one Step per timestep 0..T.

    Without ``differentiable`` nothing keeps an autograd graph, and nothing outlives a timestep
    that the next one does not need (predictions after the last timestep are skipped unless
    ``errors`` asks for them). ``states`` keeps e_n(t) in each Step for analysis. Non-finite
    logits stop the run with a PcnetsError naming the timestep and the first bad encoder.
    """
    reduction = check_reduction(error_reduction or pnet.error_reduction)
    check_timesteps(timesteps)
    if pnet._state is not None:
        raise RuntimeError("a run of this PredictiveNet is already in progress")
    if len(pnet.decoders) != pnet.num_encoders:
        raise PcnetsError("this PredictiveNet has no decoders yet: call set_decoders()")
    scaling = pnet.gradient_scaling if gradient_scaling is None else gradient_scaling
    if scaling:
        pnet.estimate_windows(tuple(x.shape[-2:]))
    state = _RunState(
        x=x,
        hyper=hyper or pnet.hyper(),
        reduction=reduction,
        differentiable=differentiable,
        scaling=scaling,
        random_init=pnet.random_init if random_init is None else random_init,
        keep=states,
    )
    state.want_errors = errors
    if not differentiable:
        state.fast = fast_constants(pnet, state.hyper, scaling)
    grad_mode = torch.enable_grad() if differentiable else torch.no_grad()
    try:
        with grad_mode:
            e0 = pnet.normalize(x)
        for t in range(timesteps + 1):
            state.t = t
            state.feedback = t < timesteps or errors
            state.e = [None] * pnet.num_encoders
            state.new_pred = [None] * pnet.num_encoders
            state.new_grad = [None] * pnet.num_encoders
            state.errors = [None] * pnet.num_encoders
            state.x = e0
            pnet._state = state
            with grad_mode:
                logits = pnet.backbone(e0)
            pnet._state = None
            check_finite(logits, state.e, t, pnet.encoder_names)
            step = Step(
                t,
                logits,
                states=list(state.e) if states else None,
                errors=list(state.errors) if errors else None,
            )
            state.prev, state.pred, state.grad = state.e, state.new_pred, state.new_grad
            yield step
    finally:
        pnet._state = None
