#!/usr/bin/env python3
"""torchvision's DenseNet against `logdense import`: a test fixture, and the full check.

`logdense import --pytorch F.pth --preset densenet-121 --out DIR` reads torchvision's
DenseNet state dict (`features.conv0.weight`, `features.norm0.*`,
`features.denseblockB.denselayerL.{norm1,conv1,norm2,conv2}.*`,
`features.transitionB.{norm,conv}.*`, `features.norm5.*`, `classifier.*`) into our network.
This script makes the inputs that check it.

--fixture [DIR]  (default crates/logdense/tests/fixtures/torchvision)
    A small torchvision DenseNet (growth 8, blocks 2-3-2, 16 initial features, bottleneck
    4 x growth, 5 classes) with a fixed seed and randomised batch-norm statistics and affine
    parameters (so that eval mode is a real check), written as
      densenet-tiny.pth              its state dict (torch.save)
      densenet-tiny-io.safetensors   `input` [2, 3, 32, 32] and its eval-mode `logits` [2, 5]
      densenet-tiny.json             the configuration, parameter count, versions
    The Rust tests import the .pth and compare their logits with the file's.

--full [--arch densenet121|densenet169|densenet201] [--weights F.pth]
       [--logdense target/release/logdense] [--work DIR] [--onnx]
    torchvision's full network (random initialisation with the same batch-norm randomisation,
    or a real state dict with --weights), its parameter count (densenet121: 7,978,856), its
    state dict and an io file (input randn(2, 3, 224, 224), logits) in WORK; then
      logdense import --pytorch WORK/ARCH.pth --preset densenet-121 --out WORK/run
      logdense export --run WORK/run --sample WORK/ours.safetensors \\
                      --sample-input WORK/io.safetensors
    and the largest absolute and relative (max|a - b| / max|b|) differences of our logits
    from torchvision's: it passes when the relative one is <= --tolerance (1e-4). --onnx also
    exports the weights and ONNX and runs bench/onnx_check.py on them.

Both modes first check the key mapping in Python: torchvision's state dict, renamed to
bench/pytorch_reference.py's names (what `logdense export --safetensors` writes) and loaded
into its network, must give torchvision's logits. The mapping is `torchvision_to_logdense`.

Exit status: 0 pass, 1 a check fails, 2 bad input (a missing binary or file, a failed
command).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import torch
import torchvision
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import pytorch_reference as pr  # noqa: E402

DEFAULT_FIXTURE = os.path.join("crates", "logdense", "tests", "fixtures", "torchvision")

# The small network of the fixture (keyword arguments of `logdense_spec`).
TINY = dict(growth=8, blocks=(2, 3, 2), init=16, classes=5, input=(3, 32, 32))

# torchvision's ImageNet DenseNets: blocks, growth, initial features, torchvision's documented
# parameter counts, and our preset names.
ARCHS = {
    "densenet121": dict(blocks=(6, 12, 24, 16), params=7_978_856, preset="densenet-121"),
    "densenet169": dict(blocks=(6, 12, 32, 32), params=14_149_480, preset="densenet-169"),
    "densenet201": dict(blocks=(6, 12, 48, 32), params=20_013_928, preset="densenet-201"),
}


class Failure(Exception):
    """A check failed (exit status 1)."""


class BadInput(Exception):
    """A file, binary or command the script needs is missing or failed (exit status 2)."""


def logdense_spec(growth, blocks, init, classes, input, bn_size=4):
    """bench/pytorch_reference.py's spec of torchvision's DenseNet: DenseNet-BC (compression
    0.5, bottleneck layers) with the ImageNet stem (7x7 stride-2 convolution, BN-ReLU, 3x3
    stride-2 max pool) and no deep supervision."""
    if bn_size != 4:
        raise ValueError(f"bn_size {bn_size}: our bottleneck is 4 x growth (bn_size 4)")
    return dict(arch="densenet-bc", pattern="dense", blocks=list(blocks), growth=growth,
                bottleneck=True, stem_width=init, stem=dict(kernel=7, stride=2, max_pool=True),
                input=tuple(input), classes=classes, deep_supervision=False, compression=0.5)


def randomise_bn(model, gen):
    """Batch-norm statistics and affine parameters away from their initial 0/1 (mean
    N(0, 0.1), variance U(0.5, 1.5), weight U(0.5, 1.5), bias N(0, 0.1)) and the classifier's
    bias (zero in torchvision's init) N(0, 0.1), so that eval mode and every mapped tensor
    count."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
            elif isinstance(m, torch.nn.Linear) and m.bias is not None:
                m.bias.normal_(0, 0.1, generator=gen)


def tiny_model(seed=1):
    """The fixture's torchvision DenseNet, seeded, batch norms randomised, in eval mode."""
    torch.manual_seed(seed)
    model = torchvision.models.DenseNet(
        growth_rate=TINY["growth"], block_config=TINY["blocks"],
        num_init_features=TINY["init"], bn_size=4, drop_rate=0, num_classes=TINY["classes"])
    randomise_bn(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def trainable_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def diffs(got, want):
    """(max|got - want|, max|got - want| / max|want|)."""
    d = float((got.double() - want.double()).abs().max())
    return d, d / max(float(want.double().abs().max()), 1e-30)


# Pre-0.4 PyTorch checkpoints (torchvision's published ImageNet weights among them) name a
# dense layer's modules `norm.1`, `conv.2`; torchvision renames them on load, and so do we.
OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|"
                     r"running_mean|running_var))$")


def normalise_keys(state):
    """A state dict with current torchvision names: `module.` prefixes (DataParallel)
    dropped and old `norm.1`-style names rewritten."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        m = OLD_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def torchvision_to_logdense(state, graph, permute_head=True):
    """torchvision DenseNet state dict -> bench/pytorch_reference.py's (and `logdense export
    --safetensors`'s) names for `graph`, a densenet-bc Graph with the ImageNet stem.

    Node by node: stem `mods.0.{conv,bn}` <- `features.{conv0,norm0}`; the L-th layer of
    block B `mods.k.{bn,bconv,bbn,conv}` <- `features.denseblockB.denselayerL.{norm1,conv1,
    norm2,conv2}`; the transition after block B `mods.k.{bn,conv}` <-
    `features.transitionB.{norm,conv}`; the head `mods.k.{bn,linear}` <-
    `features.norm5`, `classifier`.

    The head's channels come in another order: torchvision's norm5 reads the block's stack
    in order (transition or stem, x_1, ..., x_n), our head reads x_n first and then x_n's
    inputs (transition or stem, x_1, ..., x_{n-1}), the paper's rule for every head. So
    norm5's vectors and the classifier's columns are permuted (`permute_head=False` skips
    that, for the tests to show it matters). Raises ValueError on a missing, left-over or
    misshapen tensor."""
    state = normalise_keys(state)
    out, used = {}, set()

    def take(ours, theirs, perm=None, dim=0):
        for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            key = f"{theirs}.{suffix}"
            if key not in state:
                continue
            t = state[key]
            if perm is not None and t.dim() > dim:
                t = t.index_select(dim, perm)
            out[f"{ours}.{suffix}"] = t.contiguous()
            used.add(key)

    block, layer = 1, 0
    nodes = graph.nodes
    for k, node in enumerate(nodes[1:]):
        op, m = node["op"], f"mods.{k}"
        if op == "stem":
            take(f"{m}.conv", "features.conv0")
            take(f"{m}.bn", "features.norm0")
        elif op == "layer":
            layer += 1
            tv = f"features.denseblock{block}.denselayer{layer}"
            take(f"{m}.bn", f"{tv}.norm1")
            take(f"{m}.bconv", f"{tv}.conv1")
            take(f"{m}.bbn", f"{tv}.norm2")
            take(f"{m}.conv", f"{tv}.conv2")
        elif op == "down":
            take(f"{m}.bn", f"features.transition{block}.norm")
            take(f"{m}.conv", f"features.transition{block}.conv")
            block, layer = block + 1, 0
        elif op == "head":
            perm = head_permutation(nodes, node) if permute_head else None
            take(f"{m}.bn", "features.norm5", perm)
            take(f"{m}.linear", "classifier", perm, dim=1)
        else:
            raise ValueError(f"node {k + 1}: a {op} node has no torchvision counterpart")

    left = sorted(set(state) - used)
    if left:
        raise ValueError(f"{len(left)} torchvision tensors have no place in the network "
                         f"(not a torchvision DenseNet of this shape?): {left[:5]}")
    want = pr.SparseDenseNet(graph).state_dict()
    missing = sorted(set(want) - set(out))
    if missing:
        raise ValueError(f"the state dict lacks {len(missing)} tensors: {missing[:5]}")
    for key, t in want.items():
        if tuple(out[key].shape) != tuple(t.shape):
            raise ValueError(f"{key}: shape {list(out[key].shape)} from torchvision, "
                             f"expected {list(t.shape)}")
    return out


def head_permutation(nodes, head):
    """Index of each of our head's input channels in torchvision's norm5 input, which is the
    same tensors concatenated in graph order (the stack: oldest first)."""
    offset, start = 0, {}
    for i in sorted(head["inputs"]):
        start[i] = offset
        offset += nodes[i]["channels"]
    idx = []
    for i in head["inputs"]:
        idx.extend(range(start[i], start[i] + nodes[i]["channels"]))
    return torch.tensor(idx, dtype=torch.long)


def reference_logits(state, cfg, x):
    """bench/pytorch_reference.py's network for `cfg` (logdense_spec's arguments) with the
    mapped torchvision state dict, eval mode: its final head on `x`."""
    graph = pr.Graph(logdense_spec(**cfg))
    model = pr.SparseDenseNet(graph)
    model.load_state_dict(torchvision_to_logdense(state, graph), strict=True)
    with torch.no_grad():
        return model.eval()(x)[-1]


def check_reference(state, cfg, x, logits, tolerance):
    """The Python mapping check: prints it and raises Failure past the tolerance."""
    a, r = diffs(reference_logits(state, cfg, x), logits)
    print(f"pytorch_reference with the renamed state dict vs torchvision: max abs diff "
          f"{a:.3e}, max rel diff {r:.3e}")
    if not r <= tolerance:
        raise Failure(f"the renamed state dict gives other logits (rel {r:.3e} > "
                      f"{tolerance:g}): torchvision_to_logdense is wrong for this network")


def fixture(out_dir):
    """Writes the small network's fixture (same bytes on a rerun with the same versions)."""
    # One thread: the logits' last bits depend on how the sums are split between threads.
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    model = tiny_model(seed=1)
    x = torch.randn(2, *TINY["input"], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(x)
    params = trainable_params(model)
    pth = os.path.join(out_dir, "densenet-tiny.pth")
    io_path = os.path.join(out_dir, "densenet-tiny-io.safetensors")
    meta_path = os.path.join(out_dir, "densenet-tiny.json")
    torch.save(model.state_dict(), pth)
    save_file(dict(input=x.contiguous(), logits=logits.contiguous()), io_path,
              metadata=dict(source="bench/torchvision_densenet.py --fixture",
                            model="densenet-tiny.pth, eval mode"))
    meta = dict(
        growth_rate=TINY["growth"], block_config=list(TINY["blocks"]),
        num_init_features=TINY["init"], bn_size=4, drop_rate=0, num_classes=TINY["classes"],
        input=list(TINY["input"]), batch=x.shape[0], params=params,
        torch=torch.__version__, torchvision=torchvision.__version__,
        files=dict(state_dict=os.path.basename(pth), io=os.path.basename(io_path)),
        made_by="bench/torchvision_densenet.py --fixture")
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    for path in (pth, io_path, meta_path):
        print(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    print(f"trainable parameters {params:,}; logits {list(logits.shape)}, "
          f"max |logit| {float(logits.abs().max()):.4f}")
    check_reference(model.state_dict(), TINY, x, logits, 1e-5)


def load_weights(path):
    """A state dict from a .pth file (a bare state dict, or one under "state_dict")."""
    if not os.path.isfile(path):
        raise BadInput(f"--weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadInput(f"--weights {path}: not a loadable state dict: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise BadInput(f"--weights {path}: not a state dict of tensors")
    return normalise_keys(state)


def run_command(cmd):
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise BadInput(f"`{' '.join(cmd)}` failed with exit status {proc.returncode}")


def full(args):
    cfg = ARCHS[args.arch]
    preset = args.preset or cfg["preset"]
    work = os.path.abspath(args.work or os.path.join(ROOT, "runs", "torchvision", args.arch))
    os.makedirs(work, exist_ok=True)

    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, args.arch)(weights=None)
    if args.weights:
        try:
            model.load_state_dict(load_weights(args.weights), strict=True)
        except RuntimeError as e:
            raise BadInput(f"--weights {args.weights}: not a torchvision {args.arch} state "
                           f"dict: {str(e).splitlines()[0]}") from None
        print(f"weights: {args.weights}")
    else:
        randomise_bn(model, torch.Generator().manual_seed(args.seed + 1))
        print(f"weights: random (seed {args.seed}), batch norms randomised")
    model.eval()
    params = trainable_params(model)
    print(f"{args.arch}: {params:,} trainable parameters (torchvision documents "
          f"{cfg['params']:,})")
    if params != cfg["params"]:
        raise Failure(f"{args.arch} has {params:,} trainable parameters, expected "
                      f"{cfg['params']:,}")

    pth = os.path.join(work, f"{args.arch}.pth")
    io_path = os.path.join(work, "io.safetensors")
    torch.save(model.state_dict(), pth)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(args.seed + 2))
    with torch.no_grad():
        logits = model(x)
    save_file(dict(input=x.contiguous(), logits=logits.contiguous()), io_path,
              metadata=dict(source=f"bench/torchvision_densenet.py --full --arch {args.arch}"))
    print(f"wrote {pth}, {io_path}; logits {list(logits.shape)}, max |logit| "
          f"{float(logits.abs().max()):.4f}")
    spec_cfg = dict(growth=32, blocks=cfg["blocks"], init=64, classes=1000,
                    input=(3, 224, 224))
    check_reference(model.state_dict(), spec_cfg, x, logits, args.tolerance)
    if args.skip_logdense:
        return

    logdense = args.logdense
    if not (os.path.isfile(logdense) and os.access(logdense, os.X_OK)):
        raise BadInput(f"--logdense {logdense}: no such executable (cargo build --release -p "
                       "logdense, or pass --skip-logdense for the Python checks alone)")
    run_dir = os.path.join(work, "run")
    if os.path.isdir(run_dir):
        print(f"replacing {run_dir}")
        shutil.rmtree(run_dir)
    ours_path = os.path.join(work, "ours.safetensors")
    run_command([logdense, "import", "--pytorch", pth, "--preset", preset, "--out", run_dir])
    export = [logdense, "export", "--run", run_dir, "--sample", ours_path, "--sample-input",
              io_path]
    weights_path, onnx_path = (os.path.join(work, "weights.safetensors"),
                               os.path.join(work, "model.onnx"))
    if args.onnx:
        export += ["--safetensors", weights_path, "--onnx", onnx_path]
    run_command(export)

    ours = load_file(ours_path)
    for name in ("input", "logits"):
        if name not in ours:
            raise Failure(f"{ours_path} has no tensor {name!r} (it has {sorted(ours)})")
    if not torch.equal(ours["input"], x):
        raise Failure(f"{ours_path}: its input is not {io_path}'s (--sample-input ignored?)")
    if tuple(ours["logits"].shape) != tuple(logits.shape):
        raise Failure(f"our logits have shape {list(ours['logits'].shape)}, torchvision's "
                      f"{list(logits.shape)}")
    a, r = diffs(ours["logits"], logits)
    agree = (ours["logits"].argmax(1) == logits.argmax(1)).tolist()
    print(f"logdense vs torchvision: max abs diff {a:.3e}, max rel diff {r:.3e} "
          f"(max |logit| {float(logits.abs().max()):.4f}); same top-1: {agree}")
    failed = not r <= args.tolerance
    if failed:
        print(f"FAIL: relative difference {r:.3e} > {args.tolerance:g}")
    if args.onnx:
        import onnx_check

        print("$ bench/onnx_check.py --onnx " + onnx_path)
        rc = onnx_check.main(["--onnx", onnx_path, "--sample", ours_path, "--safetensors",
                              weights_path, "--tolerance", str(args.tolerance)])
        failed |= rc != 0
    if failed:
        raise Failure("logdense's import does not reproduce torchvision")
    print("pass")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--fixture", nargs="?", const=DEFAULT_FIXTURE, metavar="DIR",
                      help=f"write the small network's fixture to DIR (default: the "
                           f"repository's {DEFAULT_FIXTURE})")
    mode.add_argument("--full", action="store_true",
                      help="check `logdense import` on a full torchvision DenseNet")
    p.add_argument("--arch", choices=sorted(ARCHS), default="densenet121",
                   help="--full: the torchvision network (default densenet121)")
    p.add_argument("--preset", help="--full: our preset for it (default densenet-121, "
                                    "-169 or -201 as --arch)")
    p.add_argument("--weights", metavar="STATE_DICT.pth",
                   help="--full: load this torchvision state dict instead of random weights")
    p.add_argument("--logdense", default=os.path.join(ROOT, "target", "release", "logdense"),
                   help="--full: our binary (default target/release/logdense)")
    p.add_argument("--work", metavar="DIR",
                   help="--full: where the files go (default runs/torchvision/ARCH); its run/ "
                        "is replaced")
    p.add_argument("--onnx", action="store_true",
                   help="--full: also export weights and ONNX and run bench/onnx_check.py")
    p.add_argument("--skip-logdense", action="store_true",
                   help="--full: the Python checks only (no binary needed)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="--full: largest relative logit difference that passes (default 1e-4)")
    p.add_argument("--seed", type=int, default=1, help="--full: random seed (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="--full: torch.set_num_threads (default 0: torch's choice; --fixture "
                        "always runs on one thread, for the same bytes on every machine)")
    args = p.parse_args(argv)
    if args.fixture is not None:
        extra = [f for f in ("weights", "preset", "work", "skip_logdense", "onnx")
                 if getattr(args, f)]
        if extra:
            p.error(f"--{extra[0].replace('_', '-')} is a --full option")
    if not args.tolerance >= 0:
        p.error("--tolerance must be a non-negative number")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.fixture is not None:
            # The default is the repository's fixture folder wherever the script runs from;
            # a DIR given is relative to the working directory, as usual.
            fixture(os.path.join(ROOT, DEFAULT_FIXTURE) if args.fixture == DEFAULT_FIXTURE
                    else args.fixture)
        else:
            full(args)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
