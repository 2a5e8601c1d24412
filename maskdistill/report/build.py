"""``maskdistill report DIR``: find every ``DIR/<model>/<probe>.csv/.json/.npz`` that ``analyze``
wrote, draw the registered figures (PNG + PDF in ``DIR/figures/``, one colour per model), evaluate
the paper's claims (Secs. 3-4) for the teacher/student pairs, and write ``DIR/report.html``. The
report reads only saved results, so it regenerates without a model or a GPU.

The steps, in order: discover the results, draw the figures, add the copied sharpness logs
(Fig. 7c/f), state the claims, tabulate the per-layer numbers and the undrawn results, list the
skipped or failed probes, render the page.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

import pandas as pd

from maskdistill import __version__
from maskdistill.probes.core.manifest import FIGURES, read_manifest
from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report.claims import DEFINITIONS
from maskdistill.report.html import FigureBlock, Section, claims_html, render, table_html
from maskdistill.report.plots.sharpness import TITLE as SHARPNESS_TITLE
from maskdistill.report.plots.sharpness import draw_sharpness, import_sharpness, saved_sharpness
from maskdistill.report.registry import figures, sections, table_fn
from maskdistill.report.style import model_colors
from maskdistill.report.verdicts import evaluate

log = logging.getLogger(__name__)
MAX_OTHER_ROWS = 40
Found = Dict[str, Dict[str, ProbeResult]]  # model -> probe -> its saved result


def discover(out: Path) -> Found:
    """model -> probe -> saved result, for every model folder under ``out``."""
    found: Found = {}
    folders = [p for p in Path(out).iterdir() if p.is_dir() and p.name != FIGURES and not p.name.startswith(".")]
    for d in sorted(folders):
        for meta in sorted(d.glob("*.json")):
            if not meta.with_suffix(".csv").is_file():
                continue
            try:
                if "probe" not in json.loads(meta.read_text()):
                    continue
                found.setdefault(d.name, {})[meta.stem] = ProbeResult.load(d, meta.stem)
            except (ValueError, OSError) as e:  # a damaged file: say so, keep the rest of the report
                log.warning("skipping %s: %s", meta, e)
    return found


def model_order(manifest: dict, results: Found) -> List[str]:
    """The manifest's order (the order of analysis), then any other model folder by name."""
    first = [m for m in manifest.get("order", []) if m in results]
    return first + sorted(m for m in results if m not in first)


def _prefixed(probe: str, column: object) -> str:
    """A per-layer table's column, prefixed with its probe unless it names the probe already."""
    return str(column) if str(column).startswith(probe) else f"{probe}: {column}"


def _layer_tables(model: str, probes: Dict[str, ProbeResult]) -> Optional[pd.DataFrame]:
    frames = []
    for probe, res in sorted(probes.items()):
        try:
            t = table_fn(probe)(res)
        except Exception as e:  # a broken table of one probe must not hide the others
            log.warning("per-layer table of %s/%s failed: %s", model, probe, e)
            continue
        if t is not None and not t.empty:
            frames.append(t.rename(columns={c: _prefixed(probe, c) for c in t.columns}))
    if not frames:
        return None
    return pd.concat(frames, axis=1).sort_index()


def load_results(out: Path, sharpness: Optional[Mapping[str, str | Path]] = None) -> Tuple[dict, Found]:
    """Step 1: copy the sharpness logs of ``sharpness`` runs into ``out``, then the manifest and
    every saved result; an error naming the fix when there is nothing to report."""
    if sharpness:
        out.mkdir(parents=True, exist_ok=True)
        import_sharpness(out, sharpness)
    if not out.is_dir():
        raise FileNotFoundError(
            f"{out} is not a folder of analysis results; run `maskdistill analyze --out {out}` first."
        )
    manifest, results = read_manifest(out), discover(out)
    if not results and saved_sharpness(out).empty:
        raise FileNotFoundError(
            f"no probe results (<model>/<probe>.csv + .json) found under {out} (and no "
            f"sharpness logs: --sharpness NAME=RUN adds a fine-tuning run's)."
        )
    return manifest, results


@dataclass
class Drawn:
    """What drawing the figures left: the report's sections (by key) holding the figures, the
    probes that got a figure (the others are shown as tables) and the errors to report."""

    sections: Dict[str, Section]
    probes: Set[str] = field(default_factory=set)
    errors: List[str] = field(default_factory=list)


def _blocks(title: str, paths: List[Path]) -> List[FigureBlock]:
    """The PNGs of one figure function; several are told apart by their file names."""
    pngs = [p for p in paths if p.suffix == ".png"]
    return [FigureBlock(title if len(pngs) == 1 else f"{title} — {p.stem}", p) for p in pngs]


def draw_figures(results: Found, order: List[str], colors: Dict[str, str], figdir: Path) -> Drawn:
    """Step 2: every registered figure whose probe some model has, in report order; a failing
    figure is logged and listed, and the others are still drawn."""
    ordered = sorted(sections().items(), key=lambda kv: kv[1].order)
    drawn = Drawn({k: Section(s.title, s.intro) for k, s in ordered})
    for spec in figures():
        per_model = {m: results[m][spec.probe] for m in order if spec.probe in results[m]}
        if not per_model:
            continue
        try:
            paths = spec.fn(per_model, colors, figdir) or []
        except Exception as e:
            drawn.errors.append(f"figure {spec.name}: {type(e).__name__}: {e}")
            log.warning("figure %s failed:\n%s", spec.name, traceback.format_exc())
            continue
        drawn.probes.add(spec.probe)
        (drawn.sections.get(spec.section) or drawn.sections["other"]).figures += _blocks(spec.title, paths)
    return drawn


def add_sharpness(out: Path, figdir: Path, drawn: Drawn) -> None:
    """Step 3: Fig. 7c/f of the sharpness logs copied into ``out``, in the geometry section."""
    try:
        paths = draw_sharpness(out, figdir)
    except Exception as e:  # a damaged copied log: say so, keep the rest of the report
        drawn.errors.append(f"figure fig7cf_sharpness: {type(e).__name__}: {e}")
        return
    drawn.sections["geometry"].figures += _blocks(SHARPNESS_TITLE, paths)


def claims_section(out: Path, pairs: List[Tuple[str, str]], results: Found) -> Section:
    """Step 4: the claims table of the teacher/student ``pairs`` (also saved as ``out/claims.csv``)."""
    sec = Section("Do the paper's claims hold? (teacher → MD student)")
    if not pairs:
        return sec
    missing = [n for p in pairs for n in p if n not in results]
    if missing:
        sec.html.append(f"<p class='error'>pair member(s) without results: {html.escape(', '.join(missing))}</p>")
    table = evaluate([p for p in pairs if p[0] in results and p[1] in results], results)
    sec.html.append(claims_html(table, DEFINITIONS))
    if not table.empty:
        table.to_csv(out / "claims.csv", index=False)
    return sec


def numbers_section(order: List[str], results: Found) -> Section:
    """Step 5a: every model's per-layer numbers as one table."""
    sec = Section("Per-layer numbers")
    for m in order:
        t = _layer_tables(m, results[m])
        if t is not None:
            sec.html.append(f"<h3>{html.escape(m)}</h3>" + table_html(t))
    return sec


def add_undrawn(other: Section, order: List[str], results: Found, drawn: Set[str]) -> None:
    """Step 5b: the results of probes without a figure, as (the first rows of) their tables."""
    for m in order:
        for probe, res in sorted(results[m].items()):
            if probe in drawn:
                continue
            t = res.table
            more = (
                f" (first {MAX_OTHER_ROWS} of {len(t)} rows; all in {m}/{probe}.csv)" if len(t) > MAX_OTHER_ROWS else ""
            )
            other.html.append(
                f"<h3>{html.escape(m)}: {html.escape(probe)}{html.escape(more)}</h3>"
                + table_html(t.head(MAX_OTHER_ROWS), index=False)
            )


def status_section(order: List[str], manifest: dict, errors: List[str]) -> Section:
    """Step 6: the probes the manifest lists as skipped or failed, and the figures that failed."""
    sec = Section("Skipped or failed probes")
    for m in order:
        info = manifest.get("models", {}).get(m, {})
        for kind in ("skipped", "failed"):
            for probe, why in sorted(info.get(kind, {}).items()):
                sec.html.append(
                    f"<p class='{'na' if kind == 'skipped' else 'error'}'>{html.escape(m)}: "
                    f"{html.escape(probe)} {kind}: {html.escape(str(why))}</p>"
                )
        bad = info.get("unreadable_images", [])
        if bad:
            names = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
            sec.html.append(
                f"<p class='na'>{html.escape(m)}: {len(bad)} unreadable images skipped: {html.escape(names)}</p>"
            )
    sec.html += [f"<p class='error'>{html.escape(e)}</p>" for e in errors]
    return sec


def model_rows(
    order: List[str], manifest: dict, results: Found, colors: Dict[str, str]
) -> List[Tuple[str, str, Dict[str, str]]]:
    """The page's model table: spec, data and images from the manifest (else a result's metadata)."""
    rows = []
    for m in order:
        info = manifest.get("models", {}).get(m, {})
        meta = next(iter(results[m].values())).meta
        cells = {
            "spec": info.get("spec", meta.get("spec", "")),
            "data": info.get("data", (meta.get("data") or {}).get("data", "")),
            "images": info.get("images", meta.get("images", "")),
            "probes": ", ".join(sorted(results[m])),
        }
        maps = sorted({str(r.meta["label_map"]) for r in results[m].values() if r.meta.get("label_map")})
        if maps:  # how data labels met the head: by name, or folder order as the user stated
            cells["labels"] = "; ".join(maps)
        rows.append((m, colors[m], cells))
    return rows


def write_page(out: Path, rows: List[Tuple[str, str, Dict[str, str]]], body: List[Section]) -> Path:
    """Step 7: render ``out/report.html`` with its provenance line."""
    header = [
        f"maskdistill {html.escape(__version__)} · generated {_dt.datetime.now().isoformat(timespec='seconds')} "
        f"from {html.escape(str(out.resolve()))} (regenerate: <code>maskdistill report {html.escape(str(out))}</code>)"
    ]
    path = out / "report.html"
    path.write_text(render("maskdistill analysis", header, rows, body), encoding="utf-8")
    return path


def build_report(
    out: str | Path,
    pairs: Optional[Sequence[Tuple[str, str]]] = None,
    sharpness: Optional[Mapping[str, str | Path]] = None,
) -> Path:
    """Draw every registered figure of the results in ``out`` and write ``out/report.html``.
    ``pairs``: teacher/student pairs whose claims are stated, besides the manifest's;
    ``sharpness``: ``{name: fine-tuning run}`` whose sharpness logs are added (Fig. 7c/f) and kept."""
    out = Path(out)
    manifest, results = load_results(out, sharpness)
    order = model_order(manifest, results)
    colors = model_colors(order)
    figdir = out / FIGURES
    drawn = draw_figures(results, order, colors, figdir)
    add_sharpness(out, figdir, drawn)
    all_pairs = [(t, s) for t, s in manifest.get("pairs", [])] + [(t, s) for t, s in (pairs or [])]
    claims = claims_section(out, list(dict.fromkeys(all_pairs)), results)
    other = drawn.sections["other"]
    add_undrawn(other, order, results, drawn.probes)
    figure_secs = [s for k, s in drawn.sections.items() if k != "other"]
    body = [claims, *figure_secs, numbers_section(order, results), other, status_section(order, manifest, drawn.errors)]
    path = write_page(out, model_rows(order, manifest, results, colors), body)
    if drawn.errors:
        log.warning("report written with %d figure error(s): %s", len(drawn.errors), "; ".join(drawn.errors))
    return path


__all__ = [
    "Drawn",
    "Found",
    "build_report",
    "load_results",
    "discover",
    "model_order",
    "draw_figures",
    "add_sharpness",
    "claims_section",
    "numbers_section",
    "add_undrawn",
    "status_section",
    "model_rows",
    "write_page",
]
