#!/usr/bin/env python3
"""PyTorch reference for `logdense bench`: the same networks, the same steps, the same JSON.

The networks are built from the same rules as crates/logdense-graph/src/net.rs (a graph of
tensors: stem, feature layers, per-layer or compressing transitions, prediction heads) and
executed node by node like crates/logdense/src/network.rs, so that both sides do the same
work. The parameter count (and the FLOPs, counted with hooks) must equal ours: the script
stops with an error otherwise.

Presets: ld-v1-N-G, dense-N-G, nearest-N-G (V1, 3 blocks, CIFAR shape, deep supervision),
densenet-bc-DEPTH-G, fc-ld-103 (FC-Log-DenseNet-103, 224x224, stem 72), fc-ld-small.

Timed like ours: `warmup` untimed steps, then the median of `steps` timed ones.
- training step: forward (all heads), deep-supervision weighted cross-entropy (half on the
  final head, half spread over the auxiliary ones; per pixel for segmentation, against labels
  at each head's resolution), loss.item(), backward, SGD step (lr 0.1, momentum 0.9,
  Nesterov, weight decay 1e-4);
- inference: eval mode, torch.no_grad(), the whole forward (ours computes every head too and
  returns the last), output read back.

Usage:
  bench/.venv/bin/python bench/pytorch_reference.py --preset ld-v1-12-16 [--preset P ...]
      [--batch B] [--warmup W] [--steps S] [--threads N] [--logdense target/release/logdense]
      [--device cpu|cuda] [--channels-last] [--bf16] [--expect-params N] [--check-only] [--json]

Exported networks: `load_logdense_safetensors(W)` builds the network of a `logdense export
--safetensors W` file from its `logdense_graph` metadata (`Graph.from_logdense`: the JSON of
Rust's NetGraph, any architecture, including the ImageNet stem, max-pool transitions and up
transitions without BN) and loads W strictly: the state dict's names are this script's
module names (`mods.{k}.conv.weight`, k = node id - 1). bench/onnx_check.py and
bench/torchvision_densenet.py use it; bench/test_exchange.py tests it.

Settings: NCHW fp32 (the default), `--channels-last` (model and input in
torch.channels_last, PyTorch's faster CPU layout for convolutions) and `--bf16` (forward and
loss under torch.autocast with bfloat16: bf16 convolutions and matrix products, fp32 master
weights and optimiser state). The two combine. The JSON names the setting.
"""

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# Specs and presets (crates/logdense/src/presets.rs)


def v1_spec(pattern, n, g, nblock=3):
    return dict(arch="v1", pattern=pattern, blocks=[n] * nblock, growth=g, bottleneck=False,
                stem_width=2 * g, input=(3, 32, 32), classes=10, deep_supervision=True)


def densenet_bc_spec(n, g, nblock=3):
    s = v1_spec("dense", n, g, nblock)
    s.update(arch="densenet-bc", bottleneck=True, deep_supervision=False, compression=0.5)
    return s


def fc_ld_103_spec(stem_width=72):
    return dict(arch="fc-log", pattern="log", blocks=[4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4],
                growth=24, bottleneck=False, stem_width=stem_width, input=(3, 224, 224),
                classes=11, deep_supervision=True)


def preset(name):
    if name == "fc-ld-103":
        return fc_ld_103_spec(72)
    if name == "fc-ld-small":  # the reduced FC-Log-DenseNet for CPUs (presets.rs)
        s = fc_ld_103_spec(24)
        s.update(blocks=[2, 3, 4, 3, 2], growth=12)
        return s
    m = re.fullmatch(r"densenet-bc-(\d+)-(\d+)", name)
    if m:
        depth, g = int(m.group(1)), int(m.group(2))
        if depth < 10 or (depth - 4) % 6:
            raise SystemExit(f"preset '{name}': a DenseNet-BC depth is 6n + 4 with n >= 1")
        return densenet_bc_spec((depth - 4) // 6, g)
    for prefix, pattern in (("ld-v1-", "log"), ("dense-", "dense"), ("nearest-", "nearest")):
        m = re.fullmatch(re.escape(prefix) + r"(\d+)-(\d+)", name)
        if m:
            return v1_spec(pattern, int(m.group(1)), int(m.group(2)))
    raise SystemExit(f"unknown preset '{name}' (known here: ld-v1-N-G, dense-N-G, nearest-N-G, "
                     "densenet-bc-DEPTH-G, fc-ld-103, fc-ld-small)")


# --------------------------------------------------------------------------------------------
# Connection patterns (crates/logdense-graph/src/pattern.rs), over global indices


def floor_log2(x):
    return x.bit_length() - 1


def inputs_of(pattern, i):
    if i == 0:
        return []
    if pattern == "dense":
        s = range(i)
    elif pattern == "log":
        s = [i - (1 << k) for k in range(floor_log2(i) + 1)]
    elif pattern == "nearest":
        s = range(max(0, i - (1 + floor_log2(i))), i)
    else:
        raise ValueError(pattern)
    return sorted(set(s))


def input_sets(pattern, num_layers):
    return [inputs_of(pattern, i) for i in range(num_layers + 1)]


# --------------------------------------------------------------------------------------------
# The graph (crates/logdense-graph/src/net.rs, Builder)


class Graph:
    """A network as a list of node dicts in execution order (node 0 is the image).

    Every node has `op` ("input", "stem", "layer", "down", "up", "head"), `inputs` (node ids,
    concatenated along channels in that order), `in_channels`, `channels`, `in_size`, `size`,
    `block` and `layer`, plus its op's fields as in Rust's `Op`: stem `kernel`, `stride`,
    `max_pool`; layer `index`, `bottleneck`; down `pool` ("avg" or "max"); up
    `pre_activation`, `like` (the node whose runtime size the output is fitted to); head
    `task`, `is_final`. `Graph(spec)` builds one from a spec of this script's presets;
    `Graph.from_logdense(json)` reads one that `logdense export` wrote.
    """

    def __init__(self, spec):
        self.spec = spec
        c, h, w = spec["input"]
        self.nodes = []
        self.layer_nodes = []
        self.inputs_of_layer = []
        self.size = (h, w)
        # (size before the halving, the last layer computed at that size): an up transition
        # returns to that size and fits its output to that layer's runtime size (`like`).
        self.size_stack = []
        self.blocks = []
        self.block = 0  # the block a pushed node counts towards (net.rs's `block` field)
        self.task = "segment" if spec["arch"] == "fc-log" else "classify"
        self.nodes.append(dict(op="input", inputs=[], in_channels=c, channels=c, in_size=(h, w),
                               size=(h, w), block=0, layer=None))
        # The stem: the CIFAR one (3x3 convolution, stride 1, padding 1: same size) unless the
        # spec names another (the ImageNet one: 7x7 stride 2, then BN-ReLU-3x3 stride-2 max
        # pool), with net.rs's output size.
        stem = {**dict(kernel=3, stride=1, max_pool=False), **spec.get("stem", {})}
        k, st = stem["kernel"], stem["stride"]
        out = tuple((x + 2 * (k // 2) - k) // st + 1 for x in (h, w))
        if stem["max_pool"]:
            out = tuple((x - 1) // 2 + 1 for x in out)
        sid = self.push("stem", [0], spec["stem_width"], out, layer=0, **stem)
        self.size = out
        self.layer_nodes.append(sid)
        self.inputs_of_layer.append([])
        arch = spec["arch"]
        if arch == "v1":
            self.per_layer_network(input_sets(spec["pattern"], self.num_layers()), False)
        elif arch == "fc-log":
            sets = input_sets("log", self.num_layers())
            first_end = spec["blocks"][0]
            for i in range(first_end + 1, len(sets)):
                if first_end not in sets[i]:
                    sets[i] = sorted(sets[i] + [first_end])
            self.per_layer_network(sets, True)
        elif arch == "densenet-bc":
            self.densenet_bc(spec["compression"])
        else:
            raise ValueError(arch)

    def num_layers(self):
        return sum(self.spec["blocks"])

    def push(self, op, inputs, channels, size, layer=None, **extra):
        in_channels = sum(self.nodes[i]["channels"] for i in inputs)
        in_size = self.nodes[inputs[0]]["size"] if inputs else size
        self.nodes.append(dict(op=op, inputs=list(inputs), in_channels=in_channels,
                               channels=channels, in_size=in_size, size=size, block=self.block,
                               layer=layer, **extra))
        return len(self.nodes) - 1

    def start_block(self, first_layer, n):
        self.blocks.append(dict(first_layer=first_layer, last_layer=first_layer + n - 1,
                                size=self.size))

    def layer(self, index, inputs, width):
        bottleneck = 4 * self.spec["growth"] if self.spec["bottleneck"] else None
        nid = self.push("layer", inputs, width, self.size, layer=index, index=index,
                        bottleneck=bottleneck)
        assert len(self.layer_nodes) == index
        self.layer_nodes.append(nid)
        self.inputs_of_layer.append(list(inputs))
        return nid

    def halve(self):
        h, w = self.size
        assert h >= 2 and w >= 2, "too many blocks for the input size"
        self.size_stack.append((self.size, self.layer_nodes[-1]))
        self.size = (h // 2, w // 2)
        return self.size

    def head(self, layer, is_final):
        # "x_i and x_i's inputs": x_i first, then its inputs in the order it reads them.
        inputs = [self.layer_nodes[layer]] + self.inputs_of_layer[layer]
        # A segmenter's final prediction is at the image's size (net.rs): below it (a strided
        # stem) its logits are upsampled bilinearly.
        size = tuple(self.spec["input"][1:]) if is_final and self.task == "segment" \
            else self.size
        self.push("head", inputs, self.spec["classes"], size, task=self.task,
                  is_final=is_final)

    def heads_after_block(self, b, last_layer):
        is_final = b + 1 == len(self.spec["blocks"])
        if is_final or self.spec["deep_supervision"]:
            self.head(last_layer, is_final)

    def per_layer_network(self, sets, fully_convolutional):
        g = self.spec["growth"]
        blocks = self.spec["blocks"]
        downs = len(blocks) // 2
        last_reader = [0] * len(sets)
        for i, s in enumerate(sets):
            for j in s:
                last_reader[j] = max(last_reader[j], i)
        latest = [self.layer_nodes[0]]
        nxt = 1
        for b, n in enumerate(blocks):
            self.block = b
            self.start_block(nxt, n)
            for i in range(nxt, nxt + n):
                latest.append(self.layer(i, [latest[j] for j in sets[i]], g))
            nxt += n
            self.heads_after_block(b, nxt - 1)
            if b + 1 == len(blocks):
                break
            up = fully_convolutional and b >= downs
            if up:
                self.size, like = self.size_stack.pop()
                size = self.size
                extra = dict(pre_activation=True, like=like)
            else:
                size = self.halve()
                extra = dict(pool="avg")
            self.block = b + 1  # transitions count towards the block after them
            for j in range(nxt):
                if last_reader[j] >= nxt:
                    src = latest[j]
                    latest[j] = self.push("up" if up else "down", [src],
                                          self.nodes[src]["channels"], size, layer=j, **extra)

    def densenet_bc(self, compression):
        g = self.spec["growth"]
        blocks = self.spec["blocks"]
        stack = [self.layer_nodes[0]]
        nxt = 1
        for b, n in enumerate(blocks):
            self.block = b
            self.start_block(nxt, n)
            for i in range(nxt, nxt + n):
                stack.append(self.layer(i, list(stack), g))
            nxt += n
            self.heads_after_block(b, nxt - 1)
            if b + 1 == len(blocks):
                break
            size = self.halve()
            width = max(1, int(sum(self.nodes[i]["channels"] for i in stack) * compression))
            self.block = b + 1
            stack = [self.push("down", stack, width, size, pool="avg")]

    def last_use(self):
        last = list(range(len(self.nodes)))
        for nid, node in enumerate(self.nodes):
            for i in node["inputs"]:
                last[i] = max(last[i], nid)
        return last

    # The fields of each op in Rust's `Op` (crates/logdense-graph/src/net.rs), serde-tagged
    # by "op"; the node dicts carry them beside the node's own fields.
    OP_FIELDS = dict(input=(), stem=("kernel", "stride", "max_pool"),
                     layer=("index", "bottleneck"), down=("pool",),
                     up=("pre_activation", "like"), head=("task", "is_final"))

    def to_logdense(self):
        """The graph as the JSON of Rust's `NetGraph` (serde), as `logdense export` writes it
        in a safetensors file's `logdense_graph` metadata. The spec is this script's spec put
        in `NetSpec`'s shape; only the nodes and the task matter to `from_logdense`."""
        spec = self.spec
        # serde's kebab-case names of `Arch`'s variants (DenseNetBc: "dense-net-bc").
        arch = dict(kind={"densenet-bc": "dense-net-bc"}.get(spec["arch"], spec["arch"]))
        if spec["arch"] == "v1":
            arch["pattern"] = spec["pattern"]
        elif spec["arch"] == "densenet-bc":
            arch["compression"] = spec["compression"]
        stem = {**dict(width=spec["stem_width"], kernel=3, stride=1, max_pool=False),
                **spec.get("stem", {})}
        nodes = []
        for node in self.nodes:
            op = dict(op=node["op"], **{f: node[f] for f in self.OP_FIELDS[node["op"]]})
            nodes.append(dict(op=op, inputs=list(node["inputs"]),
                              in_channels=node["in_channels"], channels=node["channels"],
                              in_size=list(node["in_size"]), size=list(node["size"]),
                              block=node["block"], layer=node["layer"]))
        return dict(
            spec=dict(arch=arch, blocks=list(spec["blocks"]), growth=spec["growth"],
                      bottleneck=spec["bottleneck"], stem=stem, input=list(spec["input"]),
                      classes=spec["classes"], deep_supervision=spec["deep_supervision"],
                      hub_multiplier=1),
            nodes=nodes, layer_nodes=list(self.layer_nodes),
            blocks=[dict(first_layer=b["first_layer"], last_layer=b["last_layer"],
                         size=list(b["size"])) for b in self.blocks],
            task=self.task)

    @classmethod
    def from_logdense(cls, graph):
        """A Graph from the JSON (a dict, or its text) of Rust's `NetGraph`, as `logdense
        export` stores it in the `logdense_graph` metadata. Checks what the modules rely on
        (node 0 is the image, inputs come first, channel sums, sizes, a final head last) and
        raises ValueError naming the node otherwise."""
        if isinstance(graph, (str, bytes)):
            graph = json.loads(graph)
        try:
            raw_nodes, task = graph["nodes"], graph["task"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a logdense graph: no {e} field") from None
        if task not in ("classify", "segment"):
            raise ValueError(f"unknown task {task!r} (classify or segment)")
        nodes = []
        for nid, raw in enumerate(raw_nodes):
            try:
                op = raw["op"]["op"]
                if op not in cls.OP_FIELDS:
                    raise ValueError(f"node {nid}: unknown op {op!r}")
                node = dict(op=op, inputs=[int(i) for i in raw["inputs"]],
                            in_channels=int(raw["in_channels"]), channels=int(raw["channels"]),
                            in_size=tuple(raw["in_size"]), size=tuple(raw["size"]),
                            block=raw.get("block", 0), layer=raw.get("layer"))
                for f in cls.OP_FIELDS[op]:
                    node[f] = raw["op"][f]
            except (KeyError, TypeError) as e:
                raise ValueError(f"node {nid}: missing or malformed field {e}") from None
            if (nid == 0) != (op == "input"):
                raise ValueError(f"node {nid}: op {op!r}; node 0, and only node 0, is the input")
            if nid > 0:
                if not node["inputs"] or any(not 0 <= i < nid for i in node["inputs"]):
                    raise ValueError(f"node {nid} ({op}): inputs {node['inputs']} must be "
                                     f"earlier nodes")
                want = sum(nodes[i]["channels"] for i in node["inputs"])
                if node["in_channels"] != want:
                    raise ValueError(f"node {nid} ({op}): in_channels {node['in_channels']}, "
                                     f"but its inputs have {want} channels")
                if op == "up" and not 0 <= node["like"] < nid:
                    raise ValueError(f"node {nid} (up): like {node['like']} is not an "
                                     "earlier node")
                if op == "head" and node["task"] != task:
                    raise ValueError(f"node {nid}: a {node['task']} head in a {task} graph")
            nodes.append(node)
        if len(nodes) < 3 or nodes[-1]["op"] != "head" or not nodes[-1]["is_final"]:
            raise ValueError("the last node must be the final head")
        # Not built from a spec: only the fields the modules and the executor read.
        g = cls.__new__(cls)
        g.spec = graph.get("spec", {})
        g.nodes = nodes
        g.layer_nodes = list(graph.get("layer_nodes", []))
        g.blocks = list(graph.get("blocks", []))
        g.task = task
        return g


# --------------------------------------------------------------------------------------------
# Modules (crates/logdense/src/layers.rs) and the executor (network.rs)


def conv(cin, cout, k, stride=1, bias=False):
    m = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)
    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return m


class Stem(nn.Module):
    """k x k convolution (padding k // 2, no bias); the ImageNet stem adds BN-ReLU and a 3x3
    stride-2 max pool (padding 1)."""

    def __init__(self, cin, width, kernel=3, stride=1, max_pool=False):
        super().__init__()
        self.conv = conv(cin, width, kernel, stride)
        self.bn = nn.BatchNorm2d(width) if max_pool else None

    def forward(self, x, size=None):
        y = self.conv(x)
        if self.bn is not None:
            y = F.max_pool2d(F.relu(self.bn(y)), 3, stride=2, padding=1)
        return y


class Layer(nn.Module):
    """BN-ReLU-[1x1conv(4g)-BN-ReLU]-3x3conv."""

    def __init__(self, cin, growth, bottleneck):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        if bottleneck:
            self.bconv = conv(cin, bottleneck, 1)
            self.bbn = nn.BatchNorm2d(bottleneck)
            self.conv = conv(bottleneck, growth, 3)
        else:
            self.bconv = None
            self.conv = conv(cin, growth, 3)

    def forward(self, x, size=None):
        y = F.relu(self.bn(x))
        if self.bconv is not None:
            y = F.relu(self.bbn(self.bconv(y)))
        return self.conv(y)


class Down(nn.Module):
    """BN-ReLU-1x1conv-2x2 stride-2 pool (average, or max for Tiramisu's transitions)."""

    def __init__(self, cin, cout, pool="avg"):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"down transition: unknown pool {pool!r} (avg or max)")
        self.bn = nn.BatchNorm2d(cin)
        self.conv = conv(cin, cout, 1)
        self.max_pool = pool == "max"

    def forward(self, x, size=None):
        y = self.conv(F.relu(self.bn(x)))
        return F.max_pool2d(y, 2) if self.max_pool else F.avg_pool2d(y, 2)


def fit_spatial(x, size):
    """Crops or zero-pads (bottom/right) to `size`, keeping the top-left corner."""
    h, w = x.shape[2], x.shape[3]
    x = x[:, :, : size[0], : size[1]]
    h, w = x.shape[2], x.shape[3]
    if h < size[0] or w < size[1]:
        x = F.pad(x, (0, size[1] - w, 0, size[0] - h))
    return x


class Up(nn.Module):
    """[BN-ReLU-]3x3 stride-2 transposed convolution (padding 1, output padding 1, no bias),
    cropped or zero-padded to `size` (the runtime size of the node the graph names `like`).
    BN-ReLU comes first with pre-activation (FC-Log-DenseNet), not in Tiramisu."""

    def __init__(self, cin, cout, pre_activation=True):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin) if pre_activation else None
        self.deconv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1,
                                         bias=False)

    def forward(self, x, size=None):
        y = self.deconv(F.relu(self.bn(x)) if self.bn is not None else x)
        if size is not None and tuple(y.shape[2:]) != tuple(size):
            y = fit_spatial(y, size)
        return y


class Head(nn.Module):
    """BN-ReLU then global average pool + Linear, or a 1x1 convolution (segmentation) whose
    logits, given `size`, are resized bilinearly (half-pixel centres) to it."""

    def __init__(self, cin, classes, segment):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.segment = segment
        if segment:
            self.conv = conv(cin, classes, 1, bias=True)
        else:
            self.linear = nn.Linear(cin, classes)

    def forward(self, x, size=None):
        y = F.relu(self.bn(x))
        if self.segment:
            y = self.conv(y)
            if size is not None and tuple(y.shape[2:]) != tuple(size):
                y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False)
            return y
        return self.linear(F.adaptive_avg_pool2d(y, 1).flatten(1))


class SparseDenseNet(nn.Module):
    """The network of a Graph, executed node by node like network.rs. Module k is node k + 1;
    its attribute names make the state dict's names (`mods.{k}.conv.weight`, ...), which are
    the names `logdense export --safetensors` writes."""

    def __init__(self, graph):
        super().__init__()
        self.graph = graph
        seg = graph.task == "segment"
        mods = []
        for node in graph.nodes[1:]:
            op, cin, cout = node["op"], node["in_channels"], node["channels"]
            if op == "stem":
                mods.append(Stem(cin, cout, node.get("kernel", 3), node.get("stride", 1),
                                 node.get("max_pool", False)))
            elif op == "layer":
                mods.append(Layer(cin, cout, node["bottleneck"]))
            elif op == "down":
                mods.append(Down(cin, cout, node.get("pool", "avg")))
            elif op == "up":
                mods.append(Up(cin, cout, node.get("pre_activation", True)))
            elif op == "head":
                mods.append(Head(cin, cout, seg))
            else:
                raise ValueError(op)
        self.mods = nn.ModuleList(mods)
        self.last = graph.last_use()

    def forward(self, image):
        """Every head's output in graph order (auxiliary heads first, the final one last)."""
        nodes = self.graph.nodes
        values = [None] * len(nodes)
        values[0] = image
        # Runtime spatial sizes (network.rs): an up transition fits its output to node
        # `like`'s, and a head whose size differs from its input's (a segmenter's final head
        # behind a strided stem) is resized to the image's, whatever the input size.
        sizes = [None] * len(nodes)
        sizes[0] = tuple(image.shape[2:])
        heads = []
        for k, m in enumerate(self.mods):
            nid = k + 1
            node = nodes[nid]
            parts = [values[i] for i in node["inputs"]]
            x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            del parts
            for i in node["inputs"]:
                if self.last[i] == nid:
                    values[i] = None
            target = None
            if node["op"] == "up":
                target = sizes[node["like"]] if "like" in node else node["size"]
            elif node["op"] == "head" and tuple(node["size"]) != tuple(node["in_size"]):
                target = sizes[0]
            y = m(x, target)
            del x
            sizes[nid] = tuple(y.shape[2:])
            if node["op"] == "head":
                heads.append(y)
            else:
                values[nid] = y
        return heads


def load_logdense_safetensors(path, device="cpu"):
    """The PyTorch model of a `logdense export --safetensors` file, in eval mode: builds the
    network from the file's `logdense_graph` metadata and loads every tensor strictly (the
    names must match this script's modules one to one). Raises ValueError when the file has
    no graph or its tensors do not fit."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if "logdense_graph" not in meta:
        raise ValueError(f"{path}: no 'logdense_graph' in the safetensors metadata (keys: "
                         f"{sorted(meta) or 'none'}); is it a `logdense export --safetensors` "
                         "file?")
    try:
        graph = Graph.from_logdense(json.loads(meta["logdense_graph"]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the logdense_graph metadata is not JSON: {e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: logdense_graph: {e}") from None
    model = SparseDenseNet(graph)
    try:
        model.load_state_dict(load_file(path, device=device), strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: the tensors do not fit the graph's network: {e}") from None
    model.preset = meta.get("logdense_preset")
    return model.to(device).eval()


def count_flops(model, image):
    """Forward FLOPs (2 x MACs of convolutions and linear layers) of one image, by hooks, with
    the cost model's conventions (a transposed convolution counts its input positions)."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.ConvTranspose2d):
            total[0] += 2 * mod.weight.numel() * inp[0].shape[2] * inp[0].shape[3]
        elif isinstance(mod, nn.Conv2d):
            total[0] += 2 * mod.weight.numel() * out.shape[2] * out.shape[3]
        elif isinstance(mod, nn.Linear):
            total[0] += 2 * mod.weight.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(image[:1])
    model.train(was_training)
    for h in handles:
        h.remove()
    return total[0]


# --------------------------------------------------------------------------------------------
# Benchmark


def head_weights(heads):
    """train.rs head_weights(heads, false)."""
    if heads <= 1:
        return [1.0] * heads
    w = [0.5 / (heads - 1)] * heads
    w[-1] = 0.5
    return w


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def ours_cost(logdense, name):
    proc = subprocess.run([logdense, "cost", "--preset", name, "--json"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: `{logdense} cost --preset {name} --json` failed: "
                         f"{proc.stderr.strip()} (rebuild it, or pass --logdense '' and "
                         "--expect-params N)")
    return json.loads(proc.stdout)


def default_logdense():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "target", "release", "logdense")
    return path if os.path.exists(path) else None


def median(xs):
    return statistics.median(xs)


def run(name, args):
    spec = preset(name)
    graph = Graph(spec)
    torch.manual_seed(1)
    model = SparseDenseNet(graph)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    c, h, w = spec["input"]
    segment = graph.task == "segment"
    batch = args.batch or (1 if segment else 64)
    flops = count_flops(model, torch.randn(1, c, h, w))

    expect_params, expect_flops = args.expect_params, None
    if args.logdense:
        cost = ours_cost(args.logdense, name)
        expect_flops = cost["flops"]
        if expect_params is None:
            expect_params = cost["params"]
    if expect_params is not None and params != expect_params:
        raise SystemExit(f"{name}: PyTorch has {params} parameters, logdense {expect_params}")
    if expect_flops is not None and flops != expect_flops:
        raise SystemExit(f"{name}: PyTorch counts {flops} FLOPs, logdense's cost model "
                         f"{expect_flops}")
    check = dict(preset=name, params=params, flops=flops,
                 params_match=None if expect_params is None else params == expect_params,
                 flops_match=None if expect_flops is None else flops == expect_flops)
    if args.check_only:
        return check

    reset_peak_rss()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    model = model.to(dev)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)  # each preset's own peak
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, c, h, w, generator=gen).to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    # Mixed precision as PyTorch users run it: autocast around forward and loss only.
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.bf16 \
        else contextlib.nullcontext
    head_ids = [i for i, n in enumerate(graph.nodes) if n["op"] == "head"]
    weights = head_weights(len(head_ids))
    labels = []
    for hid in head_ids:
        shape = (batch,) + tuple(graph.nodes[hid]["size"]) if segment else (batch,)
        labels.append(torch.randint(0, spec["classes"], shape, generator=gen).to(dev))

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0,
                          nesterov=True, weight_decay=1e-4)
    model.train()
    train_ms = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast():
            outs = model(x)
            loss = None
            for out, wt, lab in zip(outs, weights, labels):
                if wt > 0:
                    term = F.cross_entropy(out, lab) * wt
                    loss = term if loss is None else loss + term
        value = loss.item()
        if value != value:
            raise SystemExit(f"{name}: loss is NaN at step {step}")
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()  # the step is done when the GPU is
        if step >= args.warmup:
            train_ms.append((time.perf_counter() - t0) * 1e3)
    del opt, outs, loss

    model.eval()
    infer_ms = []
    with torch.no_grad(), autocast():
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            y = model(x)[-1]
            float(y.sum())  # read back, as ours reads the output
            if step >= args.warmup:
                infer_ms.append((time.perf_counter() - t0) * 1e3)

    gflops = flops / 1e9
    tr, inf = median(train_ms), median(infer_ms)
    train_ips, infer_ips = batch * 1e3 / tr, batch * 1e3 / inf
    gpu_peak = torch.cuda.max_memory_allocated(dev) if cuda else None
    return dict(
        preset=name, batch=batch, input=[c, h, w], params=params, gflops_per_image=gflops,
        train_step_ms_median=tr, infer_ms_median=inf, train_img_per_s=train_ips,
        infer_img_per_s=infer_ips, train_gflop_per_s=3 * gflops * train_ips,
        infer_gflop_per_s=gflops * infer_ips, peak_rss_bytes=peak_rss_bytes(),
        steps=args.steps, warmup=args.warmup, threads=torch.get_num_threads(),
        framework=f"pytorch {torch.__version__}", params_match=check["params_match"],
        device=args.device, peak_gpu_allocated_bytes=gpu_peak, setting=setting_name(args),
    )


def setting_name(args):
    """The setting as compare.sh labels it: precision, then layout."""
    return ("bf16 autocast" if args.bf16 else "fp32") + \
        (" channels_last" if args.channels_last else " NCHW")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", action="append", help="repeatable; default: the issue's four")
    p.add_argument("--batch", type=int, default=0,
                   help="0: 64 for classification, 1 for segmentation (as ours)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--device", default="cpu",
                   help="cpu (default) or cuda: the GPU reference for `logdense bench "
                        "--device vulkan` (timed steps end with torch.cuda.synchronize)")
    p.add_argument("--channels-last", action="store_true",
                   help="model and input in torch.channels_last (NHWC) memory format")
    p.add_argument("--bf16", action="store_true",
                   help="forward and loss under torch.autocast(dtype=torch.bfloat16)")
    p.add_argument("--logdense", default=default_logdense(),
                   help="our binary, to read parameter and FLOP counts from "
                        "`logdense cost --preset P --json` (default: target/release/logdense)")
    p.add_argument("--expect-params", type=int,
                   help="the parameter count to assert (one preset; overrides nothing read "
                        "from --logdense)")
    p.add_argument("--check-only", action="store_true",
                   help="build and check parameter/FLOP counts, time nothing")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps: at least 1")
    presets = args.preset or ["ld-v1-12-16", "ld-v1-32-24", "densenet-bc-100-12", "fc-ld-103"]
    if args.expect_params is not None and len(presets) != 1:
        p.error("--expect-params needs exactly one --preset")
    torch.set_num_threads(args.threads)
    results = [run(name, args) for name in presets]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        if args.check_only:
            print(f"{r['preset']:<20} params {r['params']:>10} (match: {r['params_match']})  "
                  f"FLOPs {r['flops']:>14} (match: {r['flops_match']})")
        else:
            print(f"{r['preset']:<20} {r['setting']:<26} batch {r['batch']:>3}  train {r['train_step_ms_median']:9.1f} ms"
                  f" {r['train_img_per_s']:8.1f} img/s {r['train_gflop_per_s']:7.1f} GFLOP/s | "
                  f"infer {r['infer_ms_median']:9.1f} ms {r['infer_img_per_s']:8.1f} img/s | "
                  f"params {r['params']} | peak {r['peak_rss_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
