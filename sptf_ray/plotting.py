"""Figures people would rather look at than read. Matplotlib with the Agg backend only."""
from __future__ import annotations

import io

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
