"""Figures people would rather look at than read. Matplotlib with the Agg backend only."""
from __future__ import annotations

import io

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    """The figure laid out and rendered as PNG bytes, and closed."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    return buf.getvalue()


def simulation_figure(dates, swc, daily_fluxes, precip, labels, title="") -> bytes:
    """PNG bytes: SWC at 5 cm per parameter set over forcing bars and cumulative fluxes."""
    plt = _pyplot()
    fig, (ax_p, ax_swc, ax_flux) = plt.subplots(3, 1, figsize=(11, 7.5), sharex=True,
                                               gridspec_kw={"height_ratios": [1, 2.4, 1.6]})
    ax_p.bar(dates, precip, color="tab:blue", width=1.0)
    ax_p.set_ylabel("P (cm/d)")
    ax_p.invert_yaxis()
    for series, label in zip(swc, labels):
        ax_swc.plot(dates, series, lw=1.1, label=label)
    ax_swc.set_ylabel("SWC at 5 cm (cm$^3$/cm$^3$)")
    if len(labels) <= 8:
        ax_swc.legend(fontsize=8, loc="upper right")
    names = ("infiltration", "runoff", "evaporation", "transpiration", "drainage")
    for j, name in enumerate(names):
        ax_flux.plot(dates, np.nancumsum(daily_fluxes[0, :, j]), lw=1.1, label=name)
    ax_flux.set_ylabel(f"cumulative (cm)\n{labels[0]}" if len(labels) > 1 else "cumulative (cm)")
    ax_flux.legend(fontsize=8, ncol=5, loc="upper left")
    fig.suptitle(title)
    return _png(fig)


VALIDATION_SCORES = ("val_mse", "val_loss")  # the surrogate's, the SPTF's: what picks the kept checkpoint


def validation_score(history: list[dict]) -> str:
    """The validation metric a training run's epochs carry (KeyError naming both when neither)."""
    for key in VALIDATION_SCORES:
        if history and key in history[0]:
            return key
    raise KeyError(f"no validation score ({' or '.join(VALIDATION_SCORES)}) in the run's metrics")


def best_epoch(history: list[dict]) -> tuple[str, dict]:
    """(the run's validation score, the metrics of its best epoch by that score)."""
    score = validation_score(history)
    return score, min(history, key=lambda m: m[score])


def learning_curves_figure(histories: dict) -> bytes | None:
    """PNG bytes: a panel per training run ({name: its epochs' metrics}), training loss and the
    validation score per epoch on a log scale, the kept (best) epoch marked; None without epochs."""
    runs = {name: h for name, h in histories.items() if h}
    if not runs:
        return None
    plt = _pyplot()
    ncols = min(2, len(runs))
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (name, history) in zip(axes.flat, runs.items()):
        score, best = best_epoch(history)
        epochs = np.array([m["epoch"] + 1 for m in history])
        for key in ("train_loss", score):
            ax.plot(epochs, [m.get(key, np.nan) for m in history], lw=1.2, label=key)
        ax.axvline(best["epoch"] + 1, color="grey", ls=":", lw=1, label=f"kept: epoch {best['epoch'] + 1}")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(runs):]:
        ax.set_visible(False)
    return _png(fig)
