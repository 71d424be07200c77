"""The end of a training run: the best decoders kept in decoders.pt with their held-out R^2 and
what trained them, the provenance with speed and data wait, and the run folder's tables."""

from __future__ import annotations

from pcnets.core.decoders import r2_line
from pcnets.data import data_origin
from pcnets.experiments.train.loop import Training
from pcnets.reporting.train import write_outputs
from pcnets.runtime.distributed import is_main
from pcnets.runtime.session import Result, Session

DECODERS = "decoders.pt"


def finish(session: Session, tr: Training) -> Result:
    """Keep the best decoders (by held-out loss), write decoders.pt with their held-out R^2 and
    what trained them, the provenance (speed, data wait) and the tables and figure."""
    out = session.path / DECODERS
    if tr.best.state:
        tr.pnet.decoders.load_state_dict(tr.best.state)
    last = max(tr.history)
    best_rows = [r for r in tr.history[tr.best.epoch] if r["split"] == "val"]
    r2 = [r["r2"] for r in best_rows]
    cfg = tr.cfg
    trained_on = {
        "data": {k: cfg.data.get(k) for k in ("kind", "root", "split", "limit")},
        "train_images": len(tr.split.train_idx),
        "heldout_images": len(tr.split.val_idx),
        "solver": str(cfg.train.get("solver") or "sgd"),
        "augment": str(cfg.train.get("augment") or "none"),
        "epochs": last,
        "best_epoch": tr.best.epoch,
    }
    samples = sum(t["samples"] for t in tr.timing.values())
    seconds = sum(t["seconds"] for t in tr.timing.values())
    wait = sum(t["data_wait_s"] for t in tr.timing.values())
    timing = {
        "train_seconds": round(seconds, 2),
        "samples": samples,
        "samples_per_s": samples / seconds if seconds else None,
        "data_wait_s": round(wait, 2),
        "per_epoch": tr.timing,
    }
    if is_main():
        tr.pnet.save_decoders(
            out,
            data=data_origin(cfg.data, "train"),  # checked when evaluating (pcnets.data.leakage)
            epochs=last,
            config_hash=session.run_folder.hash,
            val_mse=[r["mse"] for r in best_rows],
            heldout_r2=r2,
            trained_on=trained_on,
        )
    stopped = last < tr.epochs
    session.finish(
        epochs=last,
        best_epoch=tr.best.epoch,
        stopped_early=stopped,
        train_images=len(tr.split.train_idx),
        val_images=len(tr.split.val_idx),
        timing=timing,
    )
    if is_main():
        write_outputs(session.path)
    summary = [
        f"best epoch {tr.best.epoch} of {last}{' (stopped early)' * stopped}: {r2_line(r2)}",
        f"training: {samples} samples in {seconds:.1f} s ({timing['samples_per_s'] or 0:.1f} "
        f"samples/s), {wait:.1f} s waiting for data",
    ]
    return Result(session.path, session.run_folder.metrics(), summary, {"decoders": out})
