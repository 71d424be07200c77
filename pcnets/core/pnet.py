"""PredictiveNet: a feedforward backbone, its encoder cut points, the feedback decoders, and the
timestep loop of METHOD.md section 2 (core/loop.py; one timestep is core/timestep.py).

The backbone is left as it is (its state_dict is a plain torchvision/timm one). Forward hooks on
the encoder modules replace each encoder's output with e_n(t) while a run is in progress (the
net's RunSlot holds it); outside a run the hooks do nothing, so ``pnet.backbone(x)`` stays the
plain feedforward model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from pcnets.core import loop
from pcnets.core.adjoint import adjoint_predict_and_gradient, compiled_adjoint
from pcnets.core.decoder_files import DecoderFiles
from pcnets.core.dynamics import decoder_windows
from pcnets.core.guards import check_shares, check_timesteps, hyper_tensor
from pcnets.core.run_state import Hyper, RunSlot, RunState, Step
from pcnets.core.shapes import check_decoders, hw, make_out_of_place, param_like, probe
from pcnets.core.timestep import EncoderHook
from pcnets.errors import PcnetsError, suggest


class PredictiveNet(DecoderFiles, nn.Module):
    """A feedforward CNN with predictive-coding feedback between consecutive encoders.

    Takes [0, 1] images and normalises them first: e_0 is the normalised image. Its decoder
    files (save_decoders, load_decoders) come from decoder_files.DecoderFiles.
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
        self._exact = {
            k: torch.tensor(v, dtype=torch.float64).view(1, -1, 1, 1)
            for k, v in (("mean", mean), ("std", std))
        }
        n = len(self.encoder_names)
        if n < 1:
            raise PcnetsError("a PredictiveNet needs at least one encoder module name")
        for key in ("beta", "lam", "alpha"):
            self.register_buffer(key, torch.zeros(n))
        self.register_buffer("window", torch.ones(n))  # C of the gradient scaling, per decoder
        self.set_hyperparameters(beta=0.8, lam=0.1, alpha=0.01)
        self.error_reduction = "per_sample"
        self.gradient_scaling = False
        self.random_init = False
        self.alpha_normalization = "none"  # or "relative" (beyond the paper: METHOD.md 3)
        self.fast_kernels = True  # core/kernels.py may take its fast forms (numerics switch)
        self.decoders_trained_on: dict | None = None  # the data a loaded decoder file names
        self.run_slot = RunSlot()  # the run in progress, seen by the encoder hooks
        self._adjoint = adjoint_predict_and_gradient  # compile_decoders() swaps in a compiled one
        self._windows: dict[tuple[int, int], Tensor] = {}  # C per input (H, W)
        make_out_of_place(self.backbone)
        modules = dict(self.backbone.named_modules())
        for i, mname in enumerate(self.encoder_names):
            if mname not in modules:
                raise PcnetsError(
                    f"encoder module {mname!r} not found in the backbone"
                    f"{suggest(mname, [k for k in modules if k])}"
                )
            modules[mname].register_forward_hook(EncoderHook(self.run_slot, i))
        self.shapes = self.feature_shapes(probe_size)
        if decoders is not None:
            self.set_decoders(decoders)
        self.eval()  # built for inference; train() makes only the decoders trainable

    def set_decoders(self, decoders: Sequence[nn.Module]) -> None:
        """Install the feedback decoders (decoders[0] predicts the image) after checking shapes."""
        n = self.num_encoders
        if len(decoders) != n:
            raise PcnetsError(f"{n} encoders need {n} decoders, got {len(decoders)}")
        self.decoders = nn.ModuleList(decoders).to(self.mean.device).train(self.training)
        check_decoders(self.decoders, self.shapes, self.encoder_names, param_like(self.backbone))
        self.decoders_changed()

    def decoders_changed(self) -> None:
        """Forget what was measured on the old decoders (the windows C of gradient scaling)."""
        self._windows.clear()

    # ---- configuration -------------------------------------------------------------------

    @property
    def num_encoders(self) -> int:
        return len(self.encoder_names)

    def set_hyperparameters(self, beta=None, lam=None, alpha=None) -> None:
        """Set beta, lambda, alpha: scalars, or one value per encoder. Each must be a finite number
        >= 0, and 0 <= beta + lam <= 1."""
        given = {"beta": beta, "lam": lam, "alpha": alpha}
        n, exact = self.num_encoders, dict(getattr(self, "_exact", {}))
        for k, v in given.items():
            if v is not None:
                exact[k] = hyper_tensor(k, v, n, torch.float64)
        check_shares(exact["beta"], exact["lam"])
        self._exact = exact  # the values as given, so that .double() does not keep float32's
        for key, t in exact.items():
            buf = getattr(self, key)
            buf.copy_(t.to(buf.device))

    def _apply(self, fn, recurse=True):
        """nn.Module's _apply; a float64 net then holds the hyperparameters as given, not their
        float32 roundings."""
        super()._apply(fn, recurse)
        for key, t in getattr(self, "_exact", {}).items():
            buf = getattr(self, key)
            if buf.dtype == torch.float64:
                buf.copy_(t.to(buf.device))
        return self

    def hyper(self) -> Hyper:
        return Hyper(self.beta, self.lam, self.alpha)

    def estimate_windows(
        self, size: int | tuple[int, int] | None = None, tries: int = 10
    ) -> Tensor:
        """C of the gradient scaling for every decoder at input size ``size`` (H, W; default the
        probe's), estimated once per size and cached: a window is cut off at the border of a small
        map, so C must come from the run's own input size (METHOD.md section 3)."""
        h, w = hw(size if size is not None else self.shapes[0][1:])
        if (h, w) not in self._windows:
            same = (h, w) == tuple(self.shapes[0][1:])
            shapes = self.shapes if same else self.feature_shapes((h, w))
            self._windows[(h, w)] = decoder_windows(self.decoders, shapes, tries)
        self.window.copy_(self._windows[(h, w)])
        return self.window

    def compile_decoders(self, **options) -> None:
        """torch.compile the graph-free decoder step (prediction, error, explicit adjoint), where
        nearly all the dynamics' extra time goes; the backbone stays eager (its hooks hold the
        run's state). ``options`` go to torch.compile."""
        self._adjoint = compiled_adjoint(self.num_encoders, **options)

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
        differentiable: bool = False,
        states: bool = False,
        errors: bool = False,
        terms: bool = False,
        hyper: Hyper | None = None,
        plans: list | None = None,
        **options,
    ) -> Iterator[Step]:
        """Iterate the dynamics, yielding one Step per timestep 0..T.

        Without ``differentiable`` nothing keeps an autograd graph, and nothing outlives a
        timestep that the next one does not need (predictions after the last timestep are skipped
        unless ``errors`` asks for them). ``states`` keeps e_n(t) in each Step, ``terms`` the size
        of each term of the update (Step.terms). ``options`` (error_reduction, gradient_scaling,
        random_init, alpha_normalization) default to the net's own settings; ``plans`` are the
        decoders' kernels.DecoderPlans for the explicit adjoint with a graph. Non-finite states or
        logits stop the run with a PcnetsError naming the timestep and the first bad encoder."""
        s = self.new_run(x, timesteps, graph=differentiable, hyper=hyper, plans=plans, **options)
        s.want_errors = errors
        with torch.enable_grad() if differentiable else torch.no_grad():
            e0 = self.normalize(x)
        return loop.iterate(self.run_slot, self.backbone, s, e0, timesteps, states, terms)

    def new_run(
        self, x: Tensor, timesteps: int = 10, *, graph=False, hyper=None, plans=None, **options
    ) -> RunState:
        """The RunState of a run on ``x``, its options checked (see ``steps``)."""
        opts = loop.options({k: getattr(self, k) for k in loop.OPTIONS}, options)
        check_timesteps(timesteps)
        if len(self.decoders) != self.num_encoders:
            raise PcnetsError("this PredictiveNet has no decoders yet: call set_decoders()")
        window = self.estimate_windows(x.shape[-2:]) if opts["gradient_scaling"] else None
        names, hyper = self.encoder_names, hyper or self.hyper()
        kernels = {"adjoint": self._adjoint, "fast_kernels": self.fast_kernels, "plans": plans}
        return loop.start(self.decoders, names, hyper, opts, graph, window, **kernels)

    def feature_shapes(self, size: int | tuple[int, int]) -> list[tuple[int, int, int]]:
        """C,H,W of e_0 (the image) .. e_N for an input of ``size`` (H, W)."""
        return probe(self.backbone, self.encoder_names, self.mean.shape[1], size)
