"""The dNE chart of alert emails and reports: a PNG of the last days' relative
NE degradation with its interval and the gate line (matplotlib, headless)."""

from __future__ import annotations

import io


def dne_chart_png(history: list[dict], gate_pct: float, title: str, colours: dict | None = None) -> bytes:
    """history: rows with logical_date, dne_pct, dne_pct_lo, dne_pct_hi (None where
    a day has no comparison), and optionally status, plan_version, new_plan_version,
    oldest first. Points are coloured by status (colours: status -> colour), and a
    dotted line marks each day whose plan changed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    days = [row for row in history if row.get("dne_pct") is not None]
    fig = Figure(figsize=(7.0, 2.8), dpi=100)
    ax = fig.add_subplot()
    if days:
        x = list(range(len(days)))
        dne = [row["dne_pct"] for row in days]
        lo = [row["dne_pct_lo"] if row["dne_pct_lo"] is not None else row["dne_pct"] for row in days]
        hi = [row["dne_pct_hi"] if row["dne_pct_hi"] is not None else row["dne_pct"] for row in days]
        ax.fill_between(x, lo, hi, color="#9ecae1", alpha=0.6, label="interval")
        ax.plot(x, dne, color="#08519c", linewidth=1, label="dNE %")
        ax.scatter(x, dne, s=16, zorder=3, c=[(colours or {}).get(row.get("status"), "#08519c") for row in days])
        previous = None
        for i, row in enumerate(days):
            version = row.get("new_plan_version") or row.get("plan_version")
            if row.get("new_plan_version") or (previous is not None and version != previous):
                ax.axvline(i, color="#7048e8", linestyle=":", linewidth=1)
                ax.text(
                    i, 1.0, f" v{version}", color="#7048e8", fontsize=7, va="top", transform=ax.get_xaxis_transform()
                )
            previous = version
        step = max(1, len(days) // 8)
        ax.set_xticks(x[::step], [row["logical_date"][5:] for row in days][::step], fontsize=8)
    else:
        ax.text(0.5, 0.5, "no comparisons yet", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(gate_pct, color="#cb181d", linestyle="--", linewidth=1, label=f"gate {gate_pct:g} %")
    ax.axhline(0, color="#888888", linewidth=0.5)
    ax.set_ylabel("dNE (%)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
