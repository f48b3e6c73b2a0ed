"""lpt_probe.plotting on small synthetic result tables: right content, valid vector PDFs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
from figure_data import (  # noqa: E402
    agreement_row,
    check_pdf,
    curves_table,
    mi_table,
    projection_frame,
    sweep_table,
    throughput_table,
)
from matplotlib.legend import Legend  # noqa: E402

from lpt_probe import viz as P  # noqa: E402


@pytest.fixture(autouse=True)
def _style():
    with P.paper_style():
        yield
    plt.close("all")


def legend_texts(where) -> list[str]:
    """Texts of every legend on an Axes or Figure (including legends kept with add_artist)."""
    axes = where.axes if isinstance(where, matplotlib.figure.Figure) else [where]
    legends = [c for ax in axes for c in ax.get_children() if isinstance(c, Legend)]
    if isinstance(where, matplotlib.figure.Figure):
        legends += where.legends
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def line(ax, label):
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return found


def saved(fig, tmp_path, name="fig") -> list[str]:
    paths = P.save_figure(fig, tmp_path / f"{name}.pdf")
    assert [p.name for p in paths] == [f"{name}.pdf"]
    return check_pdf(paths[0])


# -- style and saving ---------------------------------------------------------------------
def test_paper_style_applies_and_restores():
    assert matplotlib.rcParams["font.size"] == 8.0  # the fixture's paper style
    with P.paper_style("talk"):
        assert matplotlib.rcParams["pdf.fonttype"] == 42 and matplotlib.rcParams["ps.fonttype"] == 42
        assert matplotlib.rcParams["font.size"] == pytest.approx(8 * 1.6)
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        assert [matplotlib.colors.to_hex(c) for c in colours] == sns.color_palette("colorblind").as_hex()
    assert matplotlib.rcParams["font.size"] == 8.0
    style = P.paper_style("notebook")  # a plain call stays applied until restored
    assert matplotlib.rcParams["font.size"] == 10.0
    style.restore()
    assert matplotlib.rcParams["font.size"] == 8.0
    with pytest.raises(ValueError, match="context"):
        P.paper_style("poster")


def test_figure_size():
    assert P.figure_size("one-column", 0.5) == (3.3, 1.65)
    assert P.figure_size("two-column")[0] == 6.9
    assert P.figure_size(4.0, 1.0) == (4.0, 4.0)
    with pytest.raises(ValueError, match="one-column"):
        P.figure_size("three-column")


def test_save_figure_pdf_png_atomic_and_reproducible(tmp_path):
    fig, ax = plt.subplots(figsize=P.figure_size("one-column"))
    ax.plot([0, 1], [0, 1], label="PL=1")
    ax.set_xlabel("hidden state (0 = embeddings)")
    ax.legend()
    pdf, png = P.save_figure(fig, tmp_path / "sub" / "a.pdf", png=True)
    assert pdf == tmp_path / "sub" / "a.pdf" and png == tmp_path / "sub" / "a.png"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.pdf", "a.png"]  # no temp files left
    check_pdf(pdf)
    width_px = plt.imread(png).shape[1]
    assert abs(width_px - 3.3 * 200) < 60  # 200 dpi, trimmed to the tight bounding box
    first = pdf.read_bytes()
    P.save_figure(fig, tmp_path / "sub" / "a")
    assert pdf.read_bytes() == first  # no creation date: same figure, same bytes
    with pytest.raises(ValueError, match=r"\.pdf"):
        P.save_figure(fig, tmp_path / "a.png")


# -- performance and convergence ------------------------------------------------------------
def test_performance_vs_layer(tmp_path):
    df = sweep_table()
    ax = P.plot_performance_vs_layer(df)
    assert ax.get_xlabel() == "prompt layer (PL)"
    assert ax.get_ylabel() == "test accuracy"
    assert legend_texts(ax) == ["no generator", "NPG", "model tuning"]
    assert "PT" in [t.get_text() for t in ax.texts]
    ok = df[(df.status == "complete") & (df.method == "lpt") & (df.generator == "none")]
    expected = ok.groupby("prompt_layer")["test_metric"].mean()
    np.testing.assert_allclose(line(ax, "no generator").get_ydata(), expected.to_numpy())  # failed run dropped
    assert any(ln.get_marker() == "*" and list(ln.get_xdata()) == [1] for ln in ax.get_lines())
    assert ax.collections, "expected a ± std band"
    saved(ax.figure, tmp_path)


def test_performance_options_and_refusals():
    df = sweep_table()
    ax = P.plot_performance_vs_layer(df[df.method == "lpt"], hue=None, errorbars="bars")
    assert legend_texts(ax) == ["test_metric"]
    two_tasks = pd.concat([df, df.assign(task="sst2")])
    with pytest.raises(ValueError, match="task"):
        P.plot_performance_vs_layer(two_tasks)
    by_task = P.plot_performance_vs_layer(two_tasks[two_tasks.method == "lpt"], hue="task")
    assert legend_texts(by_task) == ["rte", "sst2"]
    with pytest.raises(ValueError, match="no rows"):
        P.plot_performance_vs_layer(df.assign(status="failed"))
    with pytest.raises(ValueError, match="prompt_layer"):
        P.plot_performance_vs_layer(df.drop(columns="prompt_layer"))


def test_convergence(tmp_path):
    curves = curves_table()
    ax = P.plot_convergence(curves)
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "dev accuracy"
    assert legend_texts(ax) == ["PL=1 (PT)", "PL=4", "PL=6"]  # 1, the middle (L//2+1) and the last
    ax2 = P.plot_convergence(curves, prompt_layers=[2, 5], metric="train_loss")
    assert legend_texts(ax2) == ["PL=2", "PL=5"] and ax2.get_ylabel() == "train loss"
    with pytest.raises(ValueError, match=r"\[9\]"):
        P.plot_convergence(curves, prompt_layers=[1, 9])
    mixed = pd.concat([curves, curves.assign(generator="npg")])
    with pytest.raises(ValueError, match="generator"):
        P.plot_convergence(mixed)
    # PL=1 with a generator is not prompt tuning: no "(PT)"
    assert legend_texts(P.plot_convergence(mixed, generator="npg")) == ["PL=1", "PL=4", "PL=6"]
    saved(ax.figure, tmp_path)


# -- information by layer ---------------------------------------------------------------
def test_mi_by_layer(tmp_path):
    mi = mi_table()
    ax = P.plot_mi_by_layer(mi)
    assert ax.get_xlabel() == "hidden state (0 = embeddings)"
    assert ax.get_ylabel() == "I(h; y) [bits]"
    assert legend_texts(ax) == ["PL=1", "PL=3", "PL=6", "no prompt", "shuffled labels", "random weights",
                                "null-model cross-entropy"]
    assert line(ax, "shuffled labels").get_linestyle() == "--"
    assert line(ax, "random weights").get_linestyle() == "--"
    np.testing.assert_allclose(line(ax, "null-model cross-entropy").get_ydata(), [1.0, 1.0])
    real = mi[(mi.method == "lpt") & (mi.prompt_layer == 3) & (mi.control == "none")]
    np.testing.assert_allclose(line(ax, "PL=3").get_ydata(), real.groupby("layer")["mi_bits"].mean().to_numpy())
    np.testing.assert_array_equal(line(ax, "PL=3").get_xdata(), np.arange(7))
    saved(ax.figure, tmp_path)
    acc = P.plot_mi_by_layer(mi, value="accuracy", band="ci")
    assert acc.get_ylabel() == "accuracy" and "null-model cross-entropy" not in legend_texts(acc)


def test_mi_refuses_mixed_probes():
    mi = mi_table()
    with pytest.raises(ValueError, match="probe"):
        P.plot_mi_by_layer(pd.concat([mi, mi.assign(probe="mlp")]))
    with pytest.raises(ValueError, match="control"):
        P.plot_mi_by_layer(mi.drop(columns="control"))


def test_mi_heatmap(tmp_path):
    mi = mi_table()
    mi = mi[~((mi.prompt_layer == 6) & (mi.layer == 2))]  # one missing cell
    ax = P.plot_mi_heatmap(mi)
    assert ax.get_xlabel() == "hidden state (0 = embeddings)" and ax.get_ylabel() == "prompt layer (PL)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "3", "6"]
    data = ax.images[0].get_array()
    assert data.shape == (3, 7) and data.mask[2, 2] and data.mask.sum() == 1
    cbar_axes = [a for a in ax.figure.axes if a is not ax]
    assert cbar_axes and cbar_axes[0].get_ylabel() == "I(h; y) [bits]"
    saved(ax.figure, tmp_path)


# -- projection and efficiency ------------------------------------------------------------
def test_projection(tmp_path):
    proj = projection_frame()
    fig = P.plot_projection(proj, agreement=agreement_row())
    sent, prompt = fig.axes[:2]
    assert (sent.get_title(), prompt.get_title()) == ("sentence representation", "generated prompt")
    assert sent.get_xlabel() == "UMAP 1"
    assert legend_texts(fig) == ["cluster 0", "cluster 1", "cluster 2", "entailment", "not_entailment"]

    def colours(ax):  # cluster colours used on a panel
        return {matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in ax.collections}

    assert colours(sent) == colours(prompt) and len(colours(sent)) == 3
    assert "overlap 0.62" in fig._suptitle.get_text()
    saved(fig, tmp_path)
    fig2, axes = plt.subplots(1, 2)
    assert P.plot_projection(proj, list(axes)) is fig2
    with pytest.raises(ValueError, match="prompt"):
        P.plot_projection(proj[proj.space == "sentence"])


def test_efficiency_figure(tmp_path):
    fig = P.plot_efficiency(throughput_table())
    assert [a.get_ylabel() for a in fig.axes] == ["training tokens / s", "peak memory [MB]", "accuracy"]
    assert all(a.get_xlabel() == "prompt layer (PL)" for a in fig.axes)
    assert legend_texts(fig) == ["model tuning", "prompt tuning", "LPT", "LPT + cache", "LPT NPG", "LPT NPG + cache"]
    saved(fig, tmp_path)
    fig2 = P.plot_efficiency(throughput_table(with_accuracy=False))
    assert len(fig2.axes) == 2


def test_efficiency_table():
    df = throughput_table()
    md = P.efficiency_table(df)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| model | method | PL | cache | tunable params | tokens/s | × MT |")
    assert len(lines) == 2 + 2 + 2 * 2 * 6  # header, rule, MT, PT, 2 generators x 2 cache x 6 layers
    assert "| minilm | model tuning | – | no | 22.7M | 2,000 | 1.00 | 1,500 | 0.700 |" in lines
    assert "| minilm | LPT | 6 | yes | 7.7K | 5,500 | 2.75 | 540 | 0.680 |" in lines
    tex = P.efficiency_table(df, fmt="latex")
    assert r"\toprule" in tex and r"$\times$ MT" in tex and "×" not in tex.replace(r"$\times$", "")
    with pytest.raises(ValueError, match="markdown"):
        P.efficiency_table(df, fmt="html")
