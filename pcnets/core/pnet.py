"""PredictiveNet: a feedforward backbone, its encoder cut points, the feedback decoders, and the
timestep loop of METHOD.md section 2 (core/loop.py; the encoder hooks are core/hooks.py).

The backbone is left as it is (its state_dict is a plain torchvision/timm one). Forward hooks on
the encoder modules replace each encoder's output with e_n(t) while a run is in progress; outside
a run the hooks do nothing, so ``pnet.backbone(x)`` stays the plain feedforward model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pcnets.core import decoder_files, loop
from pcnets.core.adjoint import adjoint_predict_and_gradient
from pcnets.core.dynamics import decoder_window
from pcnets.core.guards import hyper_tensor
from pcnets.core.hooks import _EncoderHook
from pcnets.core.run_state import Hyper, Step, _RunState  # noqa: F401  (Step: public API)
from pcnets.core.shapes import _make_out_of_place, _size, check_decoders, probe
from pcnets.errors import PcnetsError, suggest


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
        self.shapes = probe(self, probe_size)
        if decoders is not None:
            self.set_decoders(decoders)
        self.eval()  # built for inference; train() makes only the decoders trainable

    def set_decoders(self, decoders: Sequence[nn.Module]) -> None:
        """Install the feedback decoders (decoders[0] predicts the image) after checking shapes."""
        n = self.num_encoders
        if len(decoders) != n:
            raise PcnetsError(f"{n} encoders need {n} decoders, got {len(decoders)}")
        self.decoders = nn.ModuleList(decoders).to(self.mean.device).train(self.training)
        check_decoders(self)
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
            shapes = self.shapes if (h, w) == tuple(self.shapes[0][1:]) else probe(self, (h, w))
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

    # the loop lives in core/loop.py (its first argument is this net)
    steps = loop.steps

    # ---- build-time checks ---------------------------------------------------------------

    def feature_shapes(self, size: int | tuple[int, int]) -> list[tuple[int, int, int]]:
        """C,H,W of e_0 (the image) .. e_N for an input of ``size`` (H, W)."""
        return probe(self, size)

    # ---- decoder files (core/decoder_files.py; their first argument is this net) ----------

    decoder_checkpoint = decoder_files.decoder_checkpoint
    save_decoders = decoder_files.save_decoders
    load_decoders = decoder_files.load_decoders
