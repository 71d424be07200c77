"""PredictiveNet: a feedforward backbone, its encoder cut points, the feedback decoders, and the
timestep loop of METHOD.md section 2.

The backbone is left as it is (its state_dict is a plain torchvision/timm one). Forward hooks on
the encoder modules replace each encoder's output with e_n(t) while a run is in progress; outside
a run the hooks do nothing, so ``pnet.backbone(x)`` stays the plain feedforward model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from pcnets.core.adjoint import adjoint_predict_and_gradient, decoder_plan
from pcnets.core.decoders import read_decoder_file
from pcnets.core.dynamics import (
    decoder_window,
    error_scale,
    pc_update,
    pc_update_fused,
    predict_and_gradient,
)
from pcnets.core.guards import REDUCTIONS, check_finite, check_timesteps, hyper_tensor
from pcnets.errors import PcnetsError, suggest


@dataclass
class Step:
    """One timestep of a run: the logits, and (when asked for) e_n(t) and the per-sample errors."""

    t: int
    logits: Tensor
    states: list[Tensor] | None = None
    errors: list[Tensor] | None = None


@dataclass
class Hyper:
    """Per-encoder hyperparameters as tensors of shape [N] (beta, lambda, alpha)."""

    beta: Tensor
    lam: Tensor
    alpha: Tensor


@dataclass
class _RunState:
    """What the hooks need during one run; lives only while ``steps()`` is iterating."""

    x: Tensor
    hyper: Hyper
    reduction: str
    differentiable: bool
    scaling: bool
    random_init: bool
    t: int = 0
    feedback: bool = True
    keep: bool = False
    e: list = field(default_factory=list)  # e_n(t) for this timestep (index n-1)
    prev: list = field(default_factory=list)  # e_n(t-1)
    pred: list = field(default_factory=list)  # d_{n-1}(t-1): decoder n's prediction of e_{n-1}
    grad: list = field(default_factory=list)  # g_n(t-1)
    new_pred: list = field(default_factory=list)
    new_grad: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    want_errors: bool = False
    fast: _Fast | None = None  # set when no graph is kept (differentiable=False)


@dataclass
class _Fast:
    """Per-run constants of the graph-free path: Python-number coefficients (one device sync per
    run), the decoders' explicit-adjoint plans, and which predictions/gradients anything uses."""

    beta: list[float]
    lam: list[float]
    memory: list[float]  # 1 - beta - lam (1 - beta at the top)
    alpha: list[float]  # alpha_n, times K / sqrt(C) once K is known when scaling
    window: list[float]
    plans: list
    need_pred: list[bool]  # decoder n's prediction feeds encoder n-1 (lambda_{n-1} != 0)
    need_grad: list[bool]  # g_n is used (alpha_n != 0)
    scaled: list[bool]  # alpha_n already includes K / sqrt(C) (or needs no scaling)
    dtype: torch.dtype  # of the hyperparameters: products are rounded to it, as pc_update does


class PredictiveNet(nn.Module):
    """A feedforward CNN with predictive-coding feedback between consecutive encoders.

    Takes [0, 1] images and normalises them first: e_0 is the normalised image.
    """

    def __init__(
        self,
        backbone: nn.Module,
        encoders: Sequence[str],
        decoders: Sequence[nn.Module] | None,
        mean: Sequence[float],
        std: Sequence[float],
        transform: Callable | None = None,
        name: str = "custom",
        probe_size: int = 64,
    ):
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.encoder_names = list(encoders)
        self.decoders = nn.ModuleList()
        self.transform = transform
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        n = len(self.encoder_names)
        if n < 1:
            raise PcnetsError("a PredictiveNet needs at least one encoder module name")
        self.register_buffer("beta", torch.zeros(n))
        self.register_buffer("lam", torch.zeros(n))
        self.register_buffer("alpha", torch.zeros(n))
        self.register_buffer("window", torch.ones(n))  # C of the gradient scaling, per decoder
        self.set_hyperparameters(beta=0.8, lam=0.1, alpha=0.01)
        self.error_reduction = "per_sample"
        self.gradient_scaling = False
        self.random_init = False
        self._state: _RunState | None = None
        self._adjoint = adjoint_predict_and_gradient  # compile_decoders() swaps in a compiled one
        self._windows: dict[tuple[int, int], Tensor] = {}  # C per input (H, W)
        _make_out_of_place(self.backbone)
        modules = dict(self.backbone.named_modules())
        for i, mname in enumerate(self.encoder_names):
            if mname not in modules:
                raise PcnetsError(
                    f"encoder module {mname!r} not found in the backbone"
                    f"{suggest(mname, [k for k in modules if k])}"
                )
            modules[mname].register_forward_hook(_EncoderHook(self, i))
        self.shapes = self._probe(probe_size)
        if decoders is not None:
            self.set_decoders(decoders)
        self.eval()  # built for inference; train() makes only the decoders trainable

    def set_decoders(self, decoders: Sequence[nn.Module]) -> None:
        """Install the feedback decoders (decoders[0] predicts the image) after checking shapes."""
        n = self.num_encoders
        if len(decoders) != n:
            raise PcnetsError(f"{n} encoders need {n} decoders, got {len(decoders)}")
        self.decoders = nn.ModuleList(decoders).to(self.mean.device).train(self.training)
        self._check_decoders()
        self._windows.clear()

    # ---- configuration -------------------------------------------------------------------

    @property
    def num_encoders(self) -> int:
        return len(self.encoder_names)

    def set_hyperparameters(self, beta=None, lam=None, alpha=None) -> None:
        """Set beta, lambda, alpha: scalars, or one value per encoder. Each must be a finite number
        >= 0, and 0 <= beta + lam <= 1."""
        n = self.num_encoders
        new = {}
        for key, value in (("beta", beta), ("lam", lam), ("alpha", alpha)):
            if value is None:
                new[key] = getattr(self, key).clone()
                continue
            new[key] = hyper_tensor(key, value, n)
        lam_eff = new["lam"].clone()
        lam_eff[-1] = 0.0  # the top encoder has no feedback: its lambda is ignored
        total = new["beta"] + lam_eff
        if (total > 1 + 1e-6).any():
            bad = [i + 1 for i in torch.nonzero(total > 1 + 1e-6).flatten().tolist()]
            raise PcnetsError(f"beta + lambda must be <= 1 (encoders {bad}: {total.tolist()})")
        for key, t in new.items():
            getattr(self, key).copy_(t.to(getattr(self, key).device))

    def hyper(self) -> Hyper:
        return Hyper(self.beta, self.lam, self.alpha)

    def estimate_windows(
        self, size: int | tuple[int, int] | None = None, tries: int = 10
    ) -> Tensor:
        """C of the gradient scaling for every decoder at input size ``size`` (H, W; default the
        probe's), estimated once per size and cached: a window is cut off at the border of a small
        map, so C must come from the run's own input size (METHOD.md section 3)."""
        h, w = _size(size if size is not None else self.shapes[0][1:])
        if (h, w) not in self._windows:
            shapes = self.shapes if (h, w) == tuple(self.shapes[0][1:]) else self._probe((h, w))
            self._windows[(h, w)] = torch.tensor(
                [
                    decoder_window(dec, (2, *shapes[i + 1]), tries=tries)
                    for i, dec in enumerate(self.decoders)
                ]
            )
        self.window.copy_(self._windows[(h, w)])
        return self.window

    def compile_decoders(self, **options) -> None:
        """torch.compile the graph-free decoder step (prediction, error, explicit adjoint), where
        nearly all the dynamics' extra time goes; the backbone stays eager (its hooks hold the
        run's state). ``options`` go to torch.compile."""
        import torch._dynamo

        # one graph per decoder and per (errors, gradient) need: more than dynamo's default 8
        limit = 4 * self.num_encoders
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
        self._adjoint = torch.compile(adjoint_predict_and_gradient, dynamic=False, **options)

    # ---- running -------------------------------------------------------------------------

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def train(self, mode: bool = True) -> PredictiveNet:
        """Training mode for the decoders only: the backbone is frozen (METHOD.md section 5), so
        its BatchNorm keeps its running statistics whatever mode the net is put in."""
        super().train(mode)
        self.backbone.eval()
        return self

    def feedforward(self, x: Tensor) -> Tensor:
        """Plain feedforward logits of [0, 1] images: the backbone alone, no PC machinery."""
        return self.backbone(self.normalize(x))

    def forward(self, x: Tensor) -> Tensor:
        """Refused: a PredictiveNet has one output per timestep, and returning the feedforward
        one would let another tool measure the plain CNN while believing it measures the PC net."""
        raise PcnetsError(
            "a PredictiveNet has no single output: use pcnets.classifier(pnet, timesteps=T) for "
            "a model from [0, 1] images to the logits at T (torchattacks, RobustBench, any tool), "
            "pnet.run(x, T) for every timestep, or pnet.feedforward(x) for the plain CNN"
        )

    def run(self, x: Tensor, timesteps: int = 10, **kwargs) -> list[Tensor]:
        """Logits at timesteps 0..T (T+1 tensors); [0] is the plain feedforward output."""
        return [step.logits for step in self.steps(x, timesteps, **kwargs)]

    def steps(
        self,
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
        reduction = error_reduction or self.error_reduction
        if reduction not in REDUCTIONS:
            raise PcnetsError(
                f"error_reduction must be one of {list(REDUCTIONS)}, got {reduction!r}"
            )
        check_timesteps(timesteps)
        if self._state is not None:
            raise RuntimeError("a run of this PredictiveNet is already in progress")
        if len(self.decoders) != self.num_encoders:
            raise PcnetsError("this PredictiveNet has no decoders yet: call set_decoders()")
        scaling = self.gradient_scaling if gradient_scaling is None else gradient_scaling
        if scaling:
            self.estimate_windows(tuple(x.shape[-2:]))
        state = _RunState(
            x=x,
            hyper=hyper or self.hyper(),
            reduction=reduction,
            differentiable=differentiable,
            scaling=scaling,
            random_init=self.random_init if random_init is None else random_init,
            keep=states,
        )
        state.want_errors = errors
        if not differentiable:
            state.fast = self._fast_constants(state.hyper, scaling)
        grad_mode = torch.enable_grad() if differentiable else torch.no_grad()
        try:
            with grad_mode:
                e0 = self.normalize(x)
            for t in range(timesteps + 1):
                state.t = t
                state.feedback = t < timesteps or errors
                state.e = [None] * self.num_encoders
                state.new_pred = [None] * self.num_encoders
                state.new_grad = [None] * self.num_encoders
                state.errors = [None] * self.num_encoders
                state.x = e0
                self._state = state
                with grad_mode:
                    logits = self.backbone(e0)
                self._state = None
                check_finite(logits, state.e, t, self.encoder_names)
                step = Step(
                    t,
                    logits,
                    states=list(state.e) if states else None,
                    errors=list(state.errors) if errors else None,
                )
                state.prev, state.pred, state.grad = state.e, state.new_pred, state.new_grad
                yield step
        finally:
            self._state = None

    # ---- the hook: one encoder at one timestep (METHOD.md section 2) -----------------------

    def _fast_constants(self, hyper: Hyper, scaling: bool) -> _Fast:
        n = self.num_encoders
        lam_eff = hyper.lam.detach().clone()
        lam_eff[-1] = 0.0
        memory = 1 - hyper.beta.detach() - lam_eff  # float32, as pc_update computes it
        beta, lam, memory, alpha = (
            torch.stack([hyper.beta.detach(), hyper.lam.detach(), memory, hyper.alpha.detach()])
            .cpu()
            .tolist()
        )
        return _Fast(
            beta=beta,
            lam=lam,
            memory=memory,
            alpha=alpha,
            window=self.window.tolist() if scaling else [1.0] * n,
            plans=[decoder_plan(d) for d in self.decoders],
            need_pred=[i > 0 and lam[i - 1] != 0 for i in range(n)],
            need_grad=[a != 0 for a in alpha],
            scaled=[not scaling] * n,
            dtype=hyper.alpha.dtype,
        )

    def _encoder_step(self, i: int, ff: Tensor, s: _RunState) -> Tensor:
        if s.fast is not None:
            return self._fast_encoder_step(i, ff, s, s.fast)
        top = i == self.num_encoders - 1
        if s.t == 0:
            e = torch.randn_like(ff) if s.random_init else ff
        else:
            alpha = s.hyper.alpha[i]
            if s.scaling:
                pred = s.pred[i]  # K counts the elements of decoder n's prediction
                k_scale = error_scale(
                    pred[0].numel(), pred.shape[0], float(self.window[i]), s.reduction
                )
                alpha = alpha * k_scale
            e = pc_update(
                ff,
                s.prev[i],
                s.grad[i],
                s.hyper.beta[i],
                s.hyper.lam[i],
                alpha,
                fb=None if top else s.pred[i + 1],
            )
        s.e[i] = e
        if s.feedback:
            target = s.x if i == 0 else s.e[i - 1]
            try:
                pred, err, grad = predict_and_gradient(
                    self.decoders[i], e, target, s.reduction, s.differentiable
                )
            except ValueError as exc:
                raise PcnetsError(f"decoder {i + 1} ({self.encoder_names[i]}): {exc}") from None
            s.new_pred[i], s.new_grad[i], s.errors[i] = pred, grad, err
        return e

    def _fast_encoder_step(self, i: int, ff: Tensor, s: _RunState, f: _Fast) -> Tensor:
        """``_encoder_step`` without a graph: fused update, explicit adjoint, and no prediction or
        gradient that nothing uses."""
        top = i == self.num_encoders - 1
        if s.t == 0:
            e = torch.randn_like(ff) if s.random_init else ff
        else:
            if not f.scaled[i]:  # K counts the elements of decoder n's prediction
                if f.alpha[i] != 0:
                    pred = s.pred[i]
                    k = error_scale(pred[0].numel(), pred.shape[0], f.window[i], s.reduction)
                    f.alpha[i] = (torch.tensor(f.alpha[i], dtype=f.dtype) * k).item()
                f.scaled[i] = True
            e = pc_update_fused(
                ff,
                s.prev[i],
                s.grad[i],
                f.beta[i],
                f.lam[i],
                f.memory[i],
                f.alpha[i],
                fb=None if top else s.pred[i + 1],
            )
        s.e[i] = e
        need_grad = f.need_grad[i]
        if s.feedback and (need_grad or f.need_pred[i] or s.want_errors):
            target = s.x if i == 0 else s.e[i - 1]
            try:
                if f.plans[i] is not None:
                    pred, err, grad = self._adjoint(
                        f.plans[i], e, target, s.reduction, s.want_errors, need_grad
                    )
                else:
                    pred, err, grad = predict_and_gradient(
                        self.decoders[i], e, target, s.reduction, False
                    )
            except ValueError as exc:
                raise PcnetsError(f"decoder {i + 1} ({self.encoder_names[i]}): {exc}") from None
            s.new_pred[i], s.new_grad[i], s.errors[i] = pred, grad, err
        return e

    # ---- build-time checks ---------------------------------------------------------------

    def _like(self) -> dict:
        """dtype and device of the backbone's parameters, for dry-run inputs."""
        p = next(self.backbone.parameters(), None)
        return {"dtype": p.dtype, "device": p.device} if p is not None else {}

    def feature_shapes(self, size: int | tuple[int, int]) -> list[tuple[int, int, int]]:
        """C,H,W of e_0 (the image) .. e_N for an input of ``size`` (H, W)."""
        return self._probe(size)

    @torch.no_grad()
    def _probe(self, size: int | tuple[int, int]) -> list[tuple[int, int, int]]:
        """C,H,W of e_0..e_N for a probe image of ``size`` (decoder checks, default decoders)."""
        height, width = _size(size)
        shapes: list = [None] * self.num_encoders
        modules = dict(self.backbone.named_modules())
        handles = [
            modules[m].register_forward_hook(
                lambda mod, inp, out, i=i: shapes.__setitem__(i, tuple(out.shape[1:]))
            )
            for i, m in enumerate(self.encoder_names)
        ]
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            self.backbone(torch.zeros(1, self.mean.shape[1], height, width, **self._like()))
        finally:
            self.backbone.train(was_training)
            for h in handles:
                h.remove()
        for i, shape in enumerate(shapes):
            if shape is None or len(shape) != 3:
                raise PcnetsError(
                    f"encoder {self.encoder_names[i]!r} does not output a [B,C,H,W] feature map"
                )
        return [(self.mean.shape[1], height, width), *shapes]

    @torch.no_grad()
    def _check_decoders(self) -> None:
        for i, dec in enumerate(self.decoders):
            src, want = self.shapes[i + 1], self.shapes[i]
            try:
                got = tuple(dec(torch.zeros(1, *src, **self._like())).shape[1:])
            except RuntimeError as exc:
                raise PcnetsError(
                    f"decoder {i + 1} cannot take encoder {self.encoder_names[i]!r}'s output "
                    f"{src}: {str(exc).splitlines()[0]}"
                ) from None
            if got != want:
                raise PcnetsError(
                    f"decoder {i + 1} maps {self.encoder_names[i]!r} {src} to {got}, but its "
                    f"target has shape {want}: fix the decoder spec "
                    "(kernel/stride/padding/upsample)"
                )

    # ---- decoder files -------------------------------------------------------------------

    def decoder_checkpoint(self, **meta) -> dict:
        return {
            "format": "pcnets-decoders-v1",
            "backbone": self.name,
            "encoders": self.encoder_names,
            "decoders": self.decoders.state_dict(),
            **meta,
        }

    def save_decoders(self, path: str | Path, **meta) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.decoder_checkpoint(**meta), tmp)
        tmp.replace(path)

    def load_decoders(self, path: str | Path) -> dict:
        """Load a decoder file written by save_decoders (or `pcnets import-decoders`)."""
        ckpt = read_decoder_file(path)
        if ckpt["backbone"] != self.name or list(ckpt["encoders"]) != self.encoder_names:
            raise PcnetsError(
                f"{path} holds decoders for backbone {ckpt['backbone']!r} with encoders "
                f"{list(ckpt['encoders'])}, not {self.name!r} with {self.encoder_names}"
            )
        try:
            self.decoders.load_state_dict(ckpt["decoders"])
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise PcnetsError(
                f"{path}: decoder weights do not fit: {str(exc).splitlines()[0]}"
            ) from None
        self._windows.clear()
        return ckpt


class _EncoderHook:
    """The forward hook on encoder module i: outside a run the output passes through; inside, it
    becomes e_i(t). An object rather than a closure, so that copy.deepcopy of a PredictiveNet
    gives hooks that drive the copy, not the original."""

    def __init__(self, pnet: PredictiveNet, i: int):
        self.pnet, self.i = pnet, i

    def __call__(self, module: nn.Module, inputs, output: Tensor) -> Tensor:
        state = self.pnet._state
        return output if state is None else self.pnet._encoder_step(self.i, output, state)


def _size(size) -> tuple[int, int]:
    """(H, W) from an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _make_out_of_place(model: nn.Module) -> None:
    """In-place activations would overwrite e_n(t) and break autograd: turn them off."""
    for m in model.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
