"""Costs of the Hessian probes (paper Sec. 4, Fig. 7), one run, same model and batch:

1. one Hessian-vector product over one gradient: double backprop built per product ("one-shot"),
   double backprop on the cached gradient graph (what each product costs inside Lanczos, power
   iteration and Hutchinson, once the graph exists), and forward-over-reverse (``torch.func``);
2. products for the top-2 eigenvalues at tol 1e-3: Lanczos vs power iteration (PyHessian's method);
3. wall-clock against PyHessian 0.1 (``pip install pyhessian``; optional) for the top-2 eigenvalues
   and the trace at the same tolerance and stopping rule, with the error of each against a tight
   reference (Lanczos at tol 1e-8; a long deflated Hutchinson run for the trace).

    # CPU (the real ViT4MNIST weights and MNIST test images of the shared data folder, see tests/helpers/realdata.py)
    python benchmarks/hessian.py --model vit4mnist --batch 64
    # GPU, the target's setting for part 1 (random weights: speed does not depend on them)
    python benchmarks/hessian.py --device cuda --model vit_base_patch16_224 --batch 64 --parts 1

Tolerances: PyHessian stops power iteration when λ changes by less than tol relative and the trace
when the running mean does; our Lanczos stops on the residual bound |β s| ≤ tol·|θ| (stricter: it
bounds the error), our trace is run with PyHessian's rule ("change") at the same tol and max_iter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from maskdistill.models.modes import curvature_mode
from maskdistill.probes.curvature.hessian import hessian_summary, hessian_trace, top_eigenvalues
from maskdistill.probes.curvature.hvp import HessianOperator

CE = nn.CrossEntropyLoss()


def load(name: str, batch: int, device: torch.device) -> Tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    if name == "vit4mnist":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from helpers.realdata import load_mnist_test, load_vit4mnist, normalize  # skips (raises) without the data

        model = load_vit4mnist()
        x, y = load_mnist_test(batch)
        return model.to(device), normalize(x).to(device), y.to(device), "ViT4MNIST (real weights), MNIST test images"
    import timm

    model = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(0)
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))
    x = torch.randn(batch, *size, generator=g)
    y = torch.randint(0, model.num_classes, (batch,), generator=g)
    return model.to(device), x.to(device), y.to(device), f"{name} (random weights), random images"


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def part1(model, x, y, device, repeats: int) -> Dict[str, float]:
    batches = [(x, y)]
    with curvature_mode(model):
        op = HessianOperator(model, CE, batches)
        v = torch.randn(op.n, device=device)
        grad = timed(lambda: op.gradient(), device, repeats)
        oneshot = HessianOperator(model, CE, batches, cache_graph=False)
        t_one = timed(lambda: oneshot.matvec(v), device, repeats)
        op.matvec(v)  # builds the cached graph
        t_cached = timed(lambda: op.matvec(v), device, repeats)
        op.release()
        fwd = HessianOperator(model, CE, batches, method="forward")
        try:
            t_fwd = timed(lambda: fwd.matvec(v), device, repeats)
        except RuntimeError as e:  # an op without a forward-mode rule
            print(f"forward-over-reverse failed: {e}")
            t_fwd = float("nan")
    return {
        "grad_s": grad,
        "hvp_oneshot_s": t_one,
        "hvp_cached_s": t_cached,
        "hvp_forward_s": t_fwd,
        "ratio_oneshot": t_one / grad,
        "ratio_cached": t_cached / grad,
        "ratio_forward": t_fwd / grad,
    }


def _clock(fn: Callable[[], object], device: torch.device) -> Tuple[object, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def reference(model, batches, device) -> Dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = top_eigenvalues(model, CE, batches, k=2, tol=1e-8, max_iter=300, seed=100)
        tr = hessian_trace(model, CE, batches, tol=1e-3, max_iter=1500, seed=101, deflate=40)
    return {"eigenvalues": ref.eigenvalues, "trace": tr.estimate, "trace_se": tr.se, "trace_samples": tr.samples}


def _eigs(model, batches, device, method: str, tol: float, max_iter=None) -> Dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, secs = _clock(
            lambda: top_eigenvalues(model, CE, batches, k=2, method=method, tol=tol, max_iter=max_iter), device
        )
    return {
        "tol": tol,
        "products": res.products,
        "seconds": secs,
        "eigenvalues": res.eigenvalues,
        "converged": res.converged,
    }


def _accuracy(row: Dict[str, object], ref: Dict[str, object]) -> float:
    return max(abs(a - b) / abs(b) for a, b in zip(row["eigenvalues"], ref["eigenvalues"]))


def part2(model, batches, device, ref, target: float = 1e-3) -> Dict[str, object]:
    """Products for the top-2 at tol 1e-3, and products to reach a relative error ≤ ``target``
    (power iteration's stopping rule stops it early on close eigenvalues, so also tighter tols)."""
    lanczos = _eigs(model, batches, device, "lanczos", 1e-3)
    lanczos["max_rel_error"] = _accuracy(lanczos, ref)
    power = []
    for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):  # tighten until power iteration is as accurate
        power.append(_eigs(model, batches, device, "power", tol, max_iter=2000))
        power[-1]["max_rel_error"] = _accuracy(power[-1], ref)
        if power[-1]["max_rel_error"] <= target:
            break
    accurate = next((r for r in power if r["max_rel_error"] <= target), None)
    return {
        "lanczos": lanczos,
        "power": power,
        "target_rel_error": target,
        "ratio_same_tol": lanczos["products"] / power[0]["products"],
        "power_tol_for_target": accurate["tol"] if accurate else None,
        "ratio_equal_accuracy": lanczos["products"] / accurate["products"] if accurate else None,
    }


def part3(model, x, y, device, ref, power_tol: float | None) -> Dict[str, object]:
    try:
        from pyhessian import hessian as PyHessian
    except ImportError:
        return {"error": "pyhessian is not installed (pip install pyhessian)"}
    batches, cuda = [(x, y)], device.type == "cuda"
    out: Dict[str, object] = {}
    try:  # as users call it: eval mode, timm's default fused attention
        PyHessian(model.eval(), CE, data=(x, y), cuda=cuda).eigenvalues(maxIter=2, top_n=1)
        out["pyhessian_fused_attention"] = "works"
    except RuntimeError as e:
        out["pyhessian_fused_attention"] = f"fails: {str(e).splitlines()[0][:120]}"
    model.zero_grad(set_to_none=True)
    e_ref, t_ref = ref["eigenvalues"], ref["trace"]

    def err(vals):
        return max(abs(a - b) / abs(b) for a, b in zip(vals, e_ref))

    def py(fn):  # PyHessian in eval mode with eager attention (it fails otherwise); graph built inside
        def run():
            with curvature_mode(model):
                return fn(PyHessian(model, CE, data=(x, y), cuda=cuda))

        res, secs = _clock(run, device)
        model.zero_grad(set_to_none=True)  # PyHessian leaves .grad (with a graph) behind
        return res, secs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # (a) the same nominal tolerance and rule (tol 1e-3, at most 100 products per quantity)
        py_ev, t_py_eig = py(lambda h: h.eigenvalues(maxIter=100, tol=1e-3, top_n=2)[0])
        py_tr, t_py_tr = py(lambda h: float(np.mean(h.trace(maxIter=100, tol=1e-3))))
        ours_eig, t_eig = _clock(lambda: top_eigenvalues(model, CE, batches, k=2, tol=1e-3), device)
        ours_tr, t_tr = _clock(
            lambda: hessian_trace(model, CE, batches, tol=1e-3, max_iter=100, criterion="change"), device
        )
        same = {
            "pyhessian": {
                "eig_s": t_py_eig,
                "eig_max_rel_error": err(py_ev),
                "trace_s": t_py_tr,
                "trace_rel_error": abs(py_tr - t_ref) / abs(t_ref),
            },
            "ours": {
                "eig_s": t_eig,
                "eig_max_rel_error": err(ours_eig.eigenvalues),
                "trace_s": t_tr,
                "trace_rel_error": abs(ours_tr.estimate - t_ref) / abs(t_ref),
            },
        }
        same["speedup_eig"], same["speedup_trace"] = t_py_eig / t_eig, t_py_tr / t_tr
        same["speedup_both"] = (t_py_eig + t_py_tr) / (t_eig + t_tr)
        out["same_tolerance"] = same
        # (b) equal accuracy: top-2 within 1e-3 relative, trace with a standard error ≤ 1 % of it.
        # PyHessian has no standard error; its estimator is plain Hutchinson, whose per-sample spread we
        # measure on 100 of its samples, and it is run for the number of samples that gives SE ≤ 1 %.
        eq: Dict[str, object] = {}
        if power_tol is not None:
            py_ev2, t_py_eig2 = py(lambda h: h.eigenvalues(maxIter=1000, tol=power_tol, top_n=2)[0])
            eq["pyhessian_eig"] = {"tol": power_tol, "seconds": t_py_eig2, "max_rel_error": err(py_ev2)}
        samples100, t100 = py(lambda h: h.trace(maxIter=100, tol=0.0))  # tol 0: exactly 100 samples
        spread = float(np.std(samples100, ddof=1))
        n_plain = int(np.ceil((spread / (0.01 * abs(t_ref))) ** 2))
        py_tr2, t_py_tr2 = py(lambda h: h.trace(maxIter=n_plain, tol=0.0))
        (s_eig, s_tr), t_both = _clock(
            lambda: hessian_summary(model, CE, batches, k=2, tol=1e-3, trace_tol=1e-2, trace_max_iter=5000), device
        )
        eq["pyhessian_trace"] = {
            "samples": n_plain,
            "per_sample_std": spread,
            "seconds": t_py_tr2,
            "trace_rel_error": abs(float(np.mean(py_tr2)) - t_ref) / abs(t_ref),
            "se_rel": float(np.std(py_tr2, ddof=1) / np.sqrt(len(py_tr2)) / abs(t_ref)),
        }
        eq["ours_summary"] = {
            "seconds": t_both,
            "products": s_tr.products,
            "samples": s_tr.samples,
            "eig_max_rel_error": err(s_eig.eigenvalues),
            "se_rel": s_tr.se / abs(s_tr.estimate),
            "trace_rel_error": abs(s_tr.estimate - t_ref) / abs(t_ref),
        }
        if power_tol is not None:
            eq["speedup_both"] = (t_py_eig2 + t_py_tr2) / t_both
        out["equal_accuracy"] = eq
    return out


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit4mnist", help="vit4mnist (real weights) or a timm name")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (1: on a shared 2-core machine more threads spin against each other)",
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, x, y, what = load(args.model, args.batch, device)
    n_params = sum(p.numel() for p in model.parameters())
    parts = {p.strip() for p in args.parts.split(",")}
    report: Dict[str, object] = {
        "date": str(date.today()),
        "torch": torch.__version__,
        "device": str(device),
        "machine": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s)",
        "load_avg": os.getloadavg(),
        "model": what,
        "params": n_params,
        "batch": args.batch,
    }
    print(json.dumps(report))
    if "1" in parts:
        report["part1"] = part1(model, x, y, device, args.repeats)
        print("part 1:", json.dumps(report["part1"]))
    if parts & {"2", "3"}:
        report["reference"] = reference(model, [(x, y)], device)
        print("reference:", json.dumps(report["reference"]))
    if "2" in parts:
        report["part2"] = part2(model, [(x, y)], device, report["reference"])
        print("part 2:", json.dumps(report["part2"]))
    if "3" in parts:
        tol = report.get("part2", {}).get("power_tol_for_target", 1e-5)
        report["part3"] = part3(model, x, y, device, report["reference"], tol)
        print("part 3:", json.dumps(report["part3"]))
    report["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
