"""Figures the evaluation draws into a run directory (matplotlib, no display needed)."""

from pathlib import Path

from matplotlib.figure import Figure

from genzoo.artifacts import save_figure


def write_guidance_tradeoff(sweep: list[dict], path: Path) -> Path:
    """guidance_tradeoff.png: classifier FID against class accuracy, one point per guidance scale w."""
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    accuracy = [p["control_accuracy"] for p in sweep]
    fid = [p["fid_classifier"] for p in sweep]
    ax.plot(accuracy, fid, marker="o")
    for p in sweep:
        ax.annotate(f"w={p['guidance_scale']:g}", (p["control_accuracy"], p["fid_classifier"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("class accuracy of samples (domain classifier)")
    ax.set_ylabel("FID (classifier)")
    ax.set_title("Classifier-free guidance: fidelity against quality", fontsize=10)
    ax.grid(True, alpha=0.3)
    save_figure(fig, path)
    return path
