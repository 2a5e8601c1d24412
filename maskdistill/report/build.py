"""``maskdistill report DIR`` (issue 4 "Figures and report"; DESIGN.md "report/ reads only saved
results"): find every ``DIR/<model>/<probe>.csv/.json/.npz`` that ``analyze`` wrote, draw the
registered figures (PNG + PDF in ``DIR/figures/``, one colour per model), evaluate the paper's
claims for the teacher/student pairs, and write ``DIR/report.html``. Needs no model and no GPU.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import traceback
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd

from maskdistill import __version__
from maskdistill.probes.core.manifest import FIGURES, MANIFEST, read_manifest
from maskdistill.probes.core.registry import ProbeResult
from maskdistill.report import claims as claims_mod
from maskdistill.report.html import FigureBlock, Section, claims_html, render, table_html
from maskdistill.report.plots.sharpness import TITLE as SHARPNESS_TITLE
from maskdistill.report.plots.sharpness import draw_sharpness, import_sharpness, saved_sharpness
from maskdistill.report.registry import figures, sections, table_fn

log = logging.getLogger(__name__)
MAX_OTHER_ROWS = 40


def discover(out: Path) -> Dict[str, Dict[str, ProbeResult]]:
    """model -> probe -> saved result, for every model folder under ``out``."""
    found: Dict[str, Dict[str, ProbeResult]] = {}
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


def model_order(manifest: dict, results: Dict[str, Dict[str, ProbeResult]]) -> List[str]:
    first = [m for m in manifest.get("order", []) if m in results]
    return first + sorted(m for m in results if m not in first)


def _layer_tables(model: str, probes: Dict[str, ProbeResult]) -> Optional[pd.DataFrame]:
    frames = []
    for probe, res in sorted(probes.items()):
        try:
            t = table_fn(probe)(res)
        except Exception as e:  # a broken table of one probe must not hide the others
            log.warning("per-layer table of %s/%s failed: %s", model, probe, e)
            continue
        if t is not None and not t.empty:
            frames.append(t.rename(columns=lambda c: f"{probe}: {c}" if not str(c).startswith(probe) else str(c)))
    if not frames:
        return None
    return pd.concat(frames, axis=1).sort_index()


def build_report(
    out: str | Path,
    pairs: Optional[Sequence[Tuple[str, str]]] = None,
    sharpness: Optional[Mapping[str, str | Path]] = None,
) -> Path:
    """Draw every registered figure of the results in ``out`` and write ``out/report.html``.
    ``sharpness``: ``{name: fine-tuning run}`` whose sharpness logs are added (Fig. 7c/f) and kept."""
    out = Path(out)
    if sharpness:
        out.mkdir(parents=True, exist_ok=True)
        import_sharpness(out, sharpness)
    if not out.is_dir():
        raise FileNotFoundError(
            f"{out} is not a folder of analysis results; run `maskdistill analyze --out {out}` first."
        )
    manifest = read_manifest(out)
    results = discover(out)
    if not results and saved_sharpness(out).empty:
        raise FileNotFoundError(
            f"no probe results (<model>/<probe>.csv + .json) found under {out} (and no "
            f"sharpness logs: --sharpness NAME=RUN adds a fine-tuning run's)."
        )
    order = model_order(manifest, results)
    from maskdistill.report.style import model_colors

    colors = model_colors(order)
    figdir = out / FIGURES
    secs = {k: Section(s.title, s.intro) for k, s in sorted(sections().items(), key=lambda kv: kv[1].order)}
    drawn_probes, errors = set(), []
    for spec in figures():
        per_model = {m: results[m][spec.probe] for m in order if spec.probe in results[m]}
        if not per_model:
            continue
        try:
            paths = spec.fn(per_model, colors, figdir) or []
        except Exception as e:
            errors.append(f"figure {spec.name}: {type(e).__name__}: {e}")
            log.warning("figure %s failed:\n%s", spec.name, traceback.format_exc())
            continue
        drawn_probes.add(spec.probe)
        sec = secs.get(spec.section) or secs["other"]
        sec.figures += [
            FigureBlock(
                spec.title if len([p for p in paths if p.suffix == ".png"]) == 1 else f"{spec.title} — {p.stem}", p
            )
            for p in paths
            if p.suffix == ".png"
        ]
    try:
        secs["geometry"].figures += [
            FigureBlock(SHARPNESS_TITLE, p) for p in draw_sharpness(out, figdir) if p.suffix == ".png"
        ]
    except Exception as e:  # a damaged copied log: say so, keep the rest of the report
        errors.append(f"figure fig7cf_sharpness: {type(e).__name__}: {e}")

    all_pairs = [tuple(p) for p in manifest.get("pairs", [])] + [tuple(p) for p in (pairs or [])]
    all_pairs = list(dict.fromkeys((t, s) for t, s in all_pairs))
    claim_sec = Section("Do the paper's claims hold? (teacher → MD student)")
    if all_pairs:
        missing = [n for p in all_pairs for n in p if n not in results]
        if missing:
            claim_sec.html.append(
                f"<p class='error'>pair member(s) without results: {html.escape(', '.join(missing))}</p>"
            )
        table = claims_mod.evaluate([p for p in all_pairs if p[0] in results and p[1] in results], results)
        claim_sec.html.append(claims_html(table, claims_mod.DEFINITIONS))
        if not table.empty:
            table.to_csv(out / "claims.csv", index=False)

    numbers = Section("Per-layer numbers")
    for m in order:
        t = _layer_tables(m, results[m])
        if t is not None:
            numbers.html.append(f"<h3>{html.escape(m)}</h3>" + table_html(t))

    other = secs["other"]
    for m in order:
        for probe, res in sorted(results[m].items()):
            if probe in drawn_probes:
                continue
            t = res.table
            more = (
                f" (first {MAX_OTHER_ROWS} of {len(t)} rows; all in {m}/{probe}.csv)" if len(t) > MAX_OTHER_ROWS else ""
            )
            other.html.append(
                f"<h3>{html.escape(m)}: {html.escape(probe)}{html.escape(more)}</h3>"
                + table_html(t.head(MAX_OTHER_ROWS), index=False)
            )
    status = Section("Skipped or failed probes")
    for m in order:
        info = manifest.get("models", {}).get(m, {})
        for kind in ("skipped", "failed"):
            for probe, why in sorted(info.get(kind, {}).items()):
                status.html.append(
                    f"<p class='{'na' if kind == 'skipped' else 'error'}'>{html.escape(m)}: "
                    f"{html.escape(probe)} {kind}: {html.escape(str(why))}</p>"
                )
    status.html += [f"<p class='error'>{html.escape(e)}</p>" for e in errors]

    rows = []
    for m in order:
        info = manifest.get("models", {}).get(m, {})
        any_meta = next(iter(results[m].values())).meta
        rows.append(
            (
                m,
                colors[m],
                {
                    "spec": info.get("spec", any_meta.get("spec", "")),
                    "data": info.get("data", (any_meta.get("data") or {}).get("data", "")),
                    "images": info.get("images", any_meta.get("images", "")),
                    "probes": ", ".join(sorted(results[m])),
                },
            )
        )
    header = [
        f"maskdistill {html.escape(__version__)} · generated {_dt.datetime.now().isoformat(timespec='seconds')} "
        f"from {html.escape(str(out.resolve()))} (regenerate: <code>maskdistill report {html.escape(str(out))}</code>)"
    ]
    body = [claim_sec] + [s for k, s in secs.items() if k != "other"] + [numbers, other, status]
    page = render("maskdistill analysis", header, rows, body)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    if errors:
        log.warning("report written with %d figure error(s): %s", len(errors), "; ".join(errors))
    return path


__all__ = ["build_report", "discover", "read_manifest", "model_order", "MANIFEST", "FIGURES"]
