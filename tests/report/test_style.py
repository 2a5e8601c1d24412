"""The one figure-saving helper of the report: PNG + PDF under the given prefix, folder created,
figure closed, both paths returned (PNG first)."""

from __future__ import annotations

from PIL import Image

from maskdistill.report.style import DPI, model_colors, plt, safe_name, save_figure


def test_save_figure_writes_png_and_pdf_with_the_prefix(tmp_path):
    fig, ax = plt.subplots(figsize=(2.0, 1.0))
    ax.plot([0, 1], [1, 0])
    folder = tmp_path / "new" / "deeper"
    paths = save_figure(fig, folder / "fig3a_attention.v2")  # a dot in the prefix is kept
    assert paths == [folder / "fig3a_attention.v2.png", folder / "fig3a_attention.v2.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert Image.open(paths[0]).size == (2 * DPI, 1 * DPI)
    assert not plt.fignum_exists(fig.number)  # closed: a report draws many figures


def test_save_figure_takes_a_string_prefix_and_a_dpi(tmp_path):
    fig, _ = plt.subplots(figsize=(2.0, 1.0))
    png, pdf = save_figure(fig, str(tmp_path / "sweep_lr"), dpi=150)
    assert (png.name, pdf.name) == ("sweep_lr.png", "sweep_lr.pdf") and pdf.stat().st_size > 0
    assert Image.open(png).size == (300, 150)


def test_colours_are_fixed_per_model_and_names_are_file_safe():
    colors = model_colors([f"m{i}" for i in range(12)])
    assert colors["m0"] == "#1f77b4" and colors["m1"] == "#d62728" and colors["m10"] == colors["m0"]
    assert safe_name("timm:vit/small@a b") == "timm_vit_small_a_b"
