#!/usr/bin/env python3
"""Checks a `logdense export --onnx` model against the export's sample (and weights).

`logdense export --onnx M.onnx --sample S.safetensors [--safetensors W.safetensors]` writes
the network as ONNX (opset 17, input `image` [batch, C, H, W] with a dynamic batch, output
`logits`), and a sample: an `input` batch and our final head's `logits` for it (inference
mode). This script

- runs `onnx.checker.check_model` on M and checks its opset, names and dynamic batch;
- runs M in ONNX Runtime (CPUExecutionProvider) on the sample's input and compares the
  output with the sample's logits;
- runs M on the first row alone (and, for a one-row sample, on the row twice), which a
  model with a fixed batch fails, and compares with the first row of the sample's logits;
- given W, builds the PyTorch reference network from W's `logdense_graph` metadata
  (bench/pytorch_reference.py's `load_logdense_safetensors`), runs it in eval mode under
  torch.no_grad() and compares its final head with the sample's logits.

Each comparison prints the largest absolute difference max|a - b| and the relative one,
max|a - b| / max|b| (b: the sample's logits). Exit status: 0 when every check passes (every
relative difference <= --tolerance, and every absolute one <= --abs-tolerance when given),
1 when one fails, 2 on bad input (a missing file, a sample without `input` or `logits`).

Usage:
  bench/.venv/bin/python bench/onnx_check.py --onnx M.onnx --sample S.safetensors \\
      [--safetensors W.safetensors] [--tolerance 1e-4] [--abs-tolerance A] [--threads N]
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


class BadInput(Exception):
    """An input file is missing or not what the contract says (exit status 2)."""


def diffs(a, b):
    """(max|a - b|, max|a - b| / max|b|) of two arrays of one shape; inf on a shape mismatch,
    nan where a value is not finite."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    abs_diff = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    return abs_diff, abs_diff / max(scale, 1e-30)


class Report:
    """Collects the checks, prints each as it comes, and says whether all passed."""

    def __init__(self, tolerance, abs_tolerance):
        self.tolerance = tolerance
        self.abs_tolerance = abs_tolerance
        self.failed = []

    def fail(self, what, why):
        print(f"FAIL  {what}: {why}")
        self.failed.append(what)

    def ok(self, what, detail=""):
        print(f"ok    {what}{': ' + detail if detail else ''}")

    def compare(self, what, got, want):
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            self.fail(what, f"shape {list(got.shape)}, expected {list(want.shape)}")
            return
        a, r = diffs(got, want)
        # NaN compares false, so a NaN output fails here.
        good = r <= self.tolerance and (self.abs_tolerance is None or a <= self.abs_tolerance)
        line = f"max abs diff {a:.3e}, max rel diff {r:.3e} (max|b| {np.max(np.abs(want)):.3e})"
        if good:
            self.ok(what, line)
        else:
            self.fail(what, line + f" > tolerance {self.tolerance:g}" +
                      (f" / abs {self.abs_tolerance:g}" if self.abs_tolerance is not None
                       else ""))


def load_sample(path):
    """The sample's `input` and `logits` as float32 arrays."""
    from safetensors.numpy import load_file

    if not os.path.isfile(path):
        raise BadInput(f"--sample {path}: no such file")
    try:
        tensors = load_file(path)
    except Exception as e:  # safetensors raises several kinds on a malformed file
        raise BadInput(f"--sample {path}: not a safetensors file: {e}") from None
    missing = [k for k in ("input", "logits") if k not in tensors]
    if missing:
        raise BadInput(f"--sample {path}: no tensor {' or '.join(map(repr, missing))} "
                       f"(it has {sorted(tensors) or 'none'})")
    x, y = tensors["input"], tensors["logits"]
    if x.ndim != 4:
        raise BadInput(f"--sample {path}: input has shape {list(x.shape)}, expected "
                       "[B, C, H, W]")
    if y.ndim not in (2, 4) or y.shape[0] != x.shape[0]:
        raise BadInput(f"--sample {path}: logits have shape {list(y.shape)}, expected "
                       f"[{x.shape[0]}, classes] or [{x.shape[0]}, classes, H, W]")
    return x.astype(np.float32), y.astype(np.float32)


def check_onnx(path, x, logits, report, opset, threads):
    """The ONNX checks: checker, opset, names, dynamic batch, the sample and batch 1."""
    import onnx
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise BadInput(f"--onnx {path}: no such file")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise BadInput(f"--onnx {path}: not an ONNX model: {e}") from None
    try:
        # The path form also handles models with external data (over 2 GB).
        onnx.checker.check_model(path, full_check=True)
        report.ok("onnx.checker.check_model (full_check)")
    except Exception as e:
        report.fail("onnx.checker.check_model", str(e).strip().splitlines()[0])

    versions = {imp.domain or "ai.onnx": imp.version for imp in model.opset_import}
    have = versions.get("ai.onnx")
    if opset and have != opset:
        report.fail("opset", f"ai.onnx opset {have}, expected {opset} (imports: {versions})")
    else:
        report.ok("opset", f"ai.onnx {have}")

    # Initialisers may be listed among the inputs in old exports; the image is what is left.
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    outputs = list(model.graph.output)
    names_ok = [i.name for i in inputs] == ["image"] and [o.name for o in outputs] == ["logits"]
    if names_ok:
        report.ok("names", "input 'image', output 'logits'")
    else:
        report.fail("names", f"inputs {[i.name for i in inputs]}, outputs "
                    f"{[o.name for o in outputs]}; expected ['image'] and ['logits']")
    if not inputs or not outputs:
        report.fail("onnx graph", "no input or no output to run")
        return
    in_name, out_name = inputs[0].name, outputs[0].name

    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in dims]
    if len(dims) != 4:
        report.fail("input shape", f"{shape}, expected [batch, C, H, W]")
    elif dims[0].HasField("dim_value"):
        report.fail("dynamic batch", f"the input's shape is {shape}: the batch is fixed")
    else:
        report.ok("dynamic batch", f"input shape {shape}")
    if len(dims) == 4:
        fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
        if any(f is not None and f != s for f, s in zip(fixed, x.shape[1:])):
            report.fail("input shape", f"the model takes {shape}, the sample's input is "
                        f"{list(x.shape)}")

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:
        report.fail("onnxruntime session", str(e).strip().splitlines()[0])
        return

    def run(batch):
        return session.run([out_name], {in_name: np.ascontiguousarray(batch)})[0]

    for what, batch, want in batches(x, logits):
        try:
            report.compare(f"onnxruntime, {what}", run(batch), want)
        except Exception as e:  # ORT raises on a shape the model does not take
            report.fail(f"onnxruntime, {what}", str(e).strip().splitlines()[0])


def batches(x, logits):
    """(what, input, expected logits): the sample, its first row alone, and for a one-row
    sample the row twice, so that every run shows whether the batch is dynamic."""
    yield f"sample (batch {x.shape[0]})", x, logits
    if x.shape[0] > 1:
        yield "first row alone (batch 1)", x[:1], logits[:1]
    else:
        yield "the row twice (batch 2)", np.concatenate([x, x]), np.concatenate([logits, logits])


def check_pytorch(path, x, logits, report):
    """The PyTorch reference built from the weights file, against the sample."""
    import torch

    sys.path.insert(0, HERE)
    from pytorch_reference import load_logdense_safetensors

    if not os.path.isfile(path):
        raise BadInput(f"--safetensors {path}: no such file")
    try:
        model = load_logdense_safetensors(path)
    except ValueError as e:
        raise BadInput(f"--safetensors {e}") from None
    with torch.no_grad():
        got = model(torch.from_numpy(np.ascontiguousarray(x)))[-1]
    report.compare(f"pytorch reference ({model.preset or 'no preset'}), sample "
                   f"(batch {x.shape[0]})", got.numpy(), logits)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 all checks pass, 1 a check fails, 2 bad input.")
    p.add_argument("--onnx", required=True, metavar="M.onnx",
                   help="the model `logdense export --onnx` wrote")
    p.add_argument("--sample", required=True, metavar="S.safetensors",
                   help="the sample `logdense export --sample` wrote (tensors input, logits)")
    p.add_argument("--safetensors", metavar="W.safetensors",
                   help="the weights `logdense export --safetensors` wrote: also compare the "
                        "PyTorch reference network built from them")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest relative difference max|a-b| / max|b| that passes "
                        "(default 1e-4)")
    p.add_argument("--abs-tolerance", type=float, default=None,
                   help="also require max|a-b| <= this (default: not checked)")
    p.add_argument("--opset", type=int, default=17,
                   help="the ai.onnx opset the model must import (default 17; 0: any)")
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime intra-op threads (default 0: its own choice)")
    args = p.parse_args(argv)
    if not args.tolerance >= 0 or (args.abs_tolerance is not None and
                                   not args.abs_tolerance >= 0):
        p.error("tolerances must be non-negative numbers")
    report = Report(args.tolerance, args.abs_tolerance)
    try:
        x, logits = load_sample(args.sample)
        print(f"sample: input {list(x.shape)}, logits {list(logits.shape)}")
        check_onnx(args.onnx, x, logits, report, args.opset, args.threads)
        if args.safetensors:
            check_pytorch(args.safetensors, x, logits, report)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report.failed:
        print(f"FAILED: {len(report.failed)} check(s): {', '.join(report.failed)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
