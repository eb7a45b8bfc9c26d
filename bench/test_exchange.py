#!/usr/bin/env python3
"""Tests of the Python side of `logdense export`/`import` (no Rust binary needed).

- graphs of bench/pytorch_reference.py's presets, written as Rust `NetGraph` JSON
  (`Graph.to_logdense`) and read back (`Graph.from_logdense`), give the same nodes;
- a state dict saved with safetensors and the `logdense_graph` metadata, as `logdense export
  --safetensors` writes it, loads strictly into the model `load_logdense_safetensors` builds,
  which then computes what the original computes, bit for bit;
- the op variants that only Rust's builders make (Tiramisu: max-pool transitions, up
  transitions without BN, a multi-input up) and runtime sizes other than the built one;
- bad files give ValueError with the file's name;
- bench/onnx_check.py passes a faithful ONNX export (torch's exporter, where it works here),
  fails a perturbed sample (exit 1) and rejects bad input (exit 2);
- bench/torchvision_densenet.py's mapping of torchvision's DenseNet keys to ours.

Run: bench/.venv/bin/python -m unittest bench/test_exchange.py  (or the file itself)
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import onnx_check  # noqa: E402
import pytorch_reference as pr  # noqa: E402
import torchvision_densenet as tvd  # noqa: E402


def small_specs():
    """Small networks of every kind the script builds, named."""
    specs = {name: pr.preset(name) for name in ("ld-v1-4-8", "densenet-bc-16-8",
                                                 "nearest-3-8")}
    fc = pr.fc_ld_103_spec(8)
    fc.update(blocks=[2, 2, 3, 2, 2], growth=4, input=(3, 32, 32))
    specs["fc-log-tiny"] = fc
    # A strided stem: the final segmentation head is resized bilinearly to the image's size.
    fc2 = dict(fc, stem=dict(kernel=3, stride=2, max_pool=False), input=(3, 34, 30))
    specs["fc-log-strided"] = fc2
    # The ImageNet stem (7x7 stride 2, BN-ReLU, max pool) with DenseNet-BC blocks.
    specs["densenet-tiny"] = tvd.logdense_spec(growth=8, blocks=(2, 3, 2), init=16,
                                               classes=5, input=(3, 32, 32))
    return specs


def tiramisu_json(blocks, growth, stem_width, input_chw, classes):
    """NetGraph JSON of a small FC-DenseNet, following net.rs's `Builder::tiramisu`: the
    graph shape Python's Graph does not build (max-pool downs, ups without BN reading
    several nodes)."""
    c, h, w = input_chw
    nodes = [dict(op=dict(op="input"), inputs=[], in_channels=c, channels=c, in_size=[h, w],
                  size=[h, w], block=0, layer=None)]

    def push(op, inputs, channels, size, block, layer=None):
        in_size = nodes[inputs[0]]["size"] if inputs else list(size)
        nodes.append(dict(op=op, inputs=list(inputs),
                          in_channels=sum(nodes[i]["channels"] for i in inputs),
                          channels=channels, in_size=list(in_size), size=list(size),
                          block=block, layer=layer))
        return len(nodes) - 1

    size = (h, w)
    stem = push(dict(op="stem", kernel=3, stride=1, max_pool=False), [0], stem_width, size, 0,
                0)
    layer_nodes, size_stack, skips, stack = [stem], [], [], [stem]
    downs, nxt = len(blocks) // 2, 1
    for b, n in enumerate(blocks):
        new_layers = []
        for i in range(nxt, nxt + n):
            lid = push(dict(op="layer", index=i, bottleneck=None), stack, growth, size, b, i)
            layer_nodes.append(lid)
            stack = stack + [lid]
            new_layers.append(lid)
        nxt += n
        if b + 1 == len(blocks):
            push(dict(op="head", task="segment", is_final=True), [layer_nodes[-1]] + stack[:-1],
                 classes, (h, w), b)
            break
        if b < downs:
            skips.append(list(stack))
            size_stack.append((size, layer_nodes[-1]))
            size = (size[0] // 2, size[1] // 2)
            width = sum(nodes[i]["channels"] for i in stack)
            stack = [push(dict(op="down", pool="max"), stack, width, size, b + 1)]
        else:
            size, like = size_stack.pop()
            width = sum(nodes[i]["channels"] for i in new_layers)
            up = push(dict(op="up", pre_activation=False, like=like), new_layers, width, size,
                      b + 1)
            stack = skips.pop() + [up]
    return dict(spec=dict(arch=dict(kind="fc-dense-net")), nodes=nodes,
                layer_nodes=layer_nodes, blocks=[], task="segment")


def randomise_bn(model, seed):
    """Non-trivial BN statistics and affine parameters, so that eval mode tests them."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
                m.num_batches_tracked.fill_(7)


def save_export(model, graph_json, path, preset="test"):
    """The file `logdense export --safetensors` writes: the state dict and the metadata."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, path, metadata=dict(logdense_graph=json.dumps(graph_json),
                                         logdense_preset=preset))


class FinalHead(torch.nn.Module):
    """The final head alone, as the ONNX export has it. Export it in eval mode: the exporter
    restores the wrapper's mode afterwards, recursively, and a new module is in train mode."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model(image)[-1]


class GraphJsonTest(unittest.TestCase):
    def test_presets_round_trip(self):
        for name, spec in small_specs().items():
            with self.subTest(preset=name):
                g = pr.Graph(spec)
                doc = json.loads(json.dumps(g.to_logdense()))
                back = pr.Graph.from_logdense(doc)
                self.assertEqual(back.task, g.task)
                self.assertEqual(len(back.nodes), len(g.nodes))
                for a, b in zip(back.nodes, g.nodes):
                    self.assertEqual(a, {k: tuple(v) if k.endswith("size") else v
                                         for k, v in b.items()})
                self.assertEqual(back.last_use(), g.last_use())

    def test_json_shape(self):
        doc = pr.Graph(pr.preset("ld-v1-4-8")).to_logdense()
        self.assertEqual(doc["nodes"][0]["op"], {"op": "input"})
        self.assertEqual(doc["nodes"][1]["op"],
                         {"op": "stem", "kernel": 3, "stride": 1, "max_pool": False})
        self.assertEqual(doc["nodes"][2]["op"], {"op": "layer", "index": 1, "bottleneck": None})
        self.assertEqual(doc["nodes"][-1]["op"],
                         {"op": "head", "task": "classify", "is_final": True})
        self.assertEqual(doc["spec"]["arch"], {"kind": "v1", "pattern": "log"})
        ups = [n["op"] for n in pr.Graph(small_specs()["fc-log-tiny"]).to_logdense()["nodes"]
               if n["op"]["op"] == "up"]
        self.assertTrue(ups and all(u["pre_activation"] and u["like"] > 0 for u in ups))

    def test_bad_graphs(self):
        doc = pr.Graph(pr.preset("ld-v1-4-8")).to_logdense()
        cases = {
            "in_channels": lambda d: d["nodes"][3].update(in_channels=999),
            "earlier nodes": lambda d: d["nodes"][3].update(inputs=[7]),
            "unknown op": lambda d: d["nodes"][3]["op"].update(op="pool"),
            "final head": lambda d: d["nodes"].pop(),
            "missing or malformed": lambda d: d["nodes"][2]["op"].pop("bottleneck"),
            "no 'nodes'": lambda d: d.pop("nodes"),
        }
        for needle, break_it in cases.items():
            with self.subTest(case=needle):
                bad = json.loads(json.dumps(doc))
                break_it(bad)
                with self.assertRaisesRegex(ValueError, needle):
                    pr.Graph.from_logdense(bad)


class SafetensorsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        torch.set_num_threads(1)

    def tearDown(self):
        self.tmp.cleanup()

    def round_trip(self, name, graph_json, shapes):
        torch.manual_seed(3)
        model = pr.SparseDenseNet(pr.Graph.from_logdense(graph_json))
        randomise_bn(model, 4)
        model.eval()
        path = os.path.join(self.tmp.name, f"{name}.safetensors")
        save_export(model, graph_json, path, preset=name)
        loaded = pr.load_logdense_safetensors(path)
        self.assertFalse(loaded.training)
        self.assertEqual(loaded.preset, name)
        c = graph_json["nodes"][0]["channels"]
        outs = []
        for h, w in shapes:
            x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(5))
            with torch.no_grad():
                want, got = model(x), loaded(x)
            self.assertEqual(len(got), len(want))
            for a, b in zip(got, want):
                self.assertTrue(torch.equal(a, b), f"{name} at {h}x{w}")
            outs.append(got[-1])
        return loaded, outs

    def test_presets(self):
        for name, spec in small_specs().items():
            with self.subTest(preset=name):
                g = pr.Graph(spec)
                _, (y,) = self.round_trip(name, g.to_logdense(), [spec["input"][1:]])
                final = g.nodes[-1]
                want = (2, spec["classes"]) + (tuple(final["size"]) if g.task == "segment"
                                               else ())
                self.assertEqual(tuple(y.shape), want)

    def test_state_dict_names(self):
        g = pr.Graph(small_specs()["densenet-tiny"])
        names = set(pr.SparseDenseNet(g).state_dict())
        for want in ("mods.0.conv.weight", "mods.0.bn.running_var",
                     "mods.0.bn.num_batches_tracked", "mods.1.bn.weight", "mods.1.bconv.weight",
                     "mods.1.bbn.bias", "mods.1.conv.weight", "mods.3.conv.weight",
                     f"mods.{len(g.nodes) - 2}.linear.weight"):
            self.assertIn(want, names)
        self.assertNotIn("mods.0.conv.bias", names)
        seg = pr.SparseDenseNet(pr.Graph(small_specs()["fc-log-tiny"])).state_dict()
        k = len(seg) and max(int(n.split(".")[1]) for n in seg)
        self.assertIn(f"mods.{k}.conv.bias", seg)
        self.assertEqual(seg["mods.0.conv.weight"].shape[2:], (3, 3))

    def test_tiramisu_and_runtime_sizes(self):
        doc = tiramisu_json([2, 2, 1, 2, 2], 4, 8, (3, 12, 12), 5)
        ops = [n["op"]["op"] for n in doc["nodes"]]
        self.assertEqual(ops.count("down"), 2)
        self.assertEqual(ops.count("up"), 2)
        # Built 12x12; 11x13 makes 5x6 then 2x3 maps, whose ups (6x6, 4x6) are cropped/padded.
        loaded, outs = self.round_trip("tiramisu", doc, [(12, 12), (11, 13)])
        self.assertEqual(tuple(outs[0].shape), (2, 5, 12, 12))
        self.assertEqual(tuple(outs[1].shape), (2, 5, 11, 13))
        # Tiramisu's ups have no BN, so no `mods.k.bn.*` tensors.
        up_ids = [k for k, m in enumerate(loaded.mods) if isinstance(m, pr.Up)]
        self.assertEqual(len(up_ids), 2)
        self.assertTrue(all(loaded.mods[k].bn is None for k in up_ids))
        names = loaded.state_dict()
        self.assertFalse([n for n in names for k in up_ids if n.startswith(f"mods.{k}.bn.")])
        self.assertTrue(all(f"mods.{k}.deconv.weight" in names for k in up_ids))
        self.assertTrue(all(isinstance(loaded.mods[k], pr.Down) and loaded.mods[k].max_pool
                            for k, n in enumerate(doc["nodes"][1:]) if n["op"]["op"] == "down"))
        # A per-layer FC network at an odd size, and a strided stem's final-head resize.
        spec = small_specs()["fc-log-tiny"]
        _, outs = self.round_trip("fc", pr.Graph(spec).to_logdense(), [(27, 30)])
        self.assertEqual(tuple(outs[0].shape), (2, spec["classes"], 27, 30))
        spec = small_specs()["fc-log-strided"]
        _, outs = self.round_trip("fc-strided", pr.Graph(spec).to_logdense(), [(34, 30),
                                                                               (21, 26)])
        self.assertEqual(tuple(outs[0].shape[2:]), (34, 30))
        self.assertEqual(tuple(outs[1].shape[2:]), (21, 26))

    def test_bad_files(self):
        g = pr.Graph(pr.preset("ld-v1-4-8"))
        model = pr.SparseDenseNet(g)
        plain = os.path.join(self.tmp.name, "plain.safetensors")
        save_file(model.state_dict(), plain)
        with self.assertRaisesRegex(ValueError, "plain.safetensors: no 'logdense_graph'"):
            pr.load_logdense_safetensors(plain)
        state = model.state_dict()
        state.pop("mods.0.conv.weight")
        short = os.path.join(self.tmp.name, "short.safetensors")
        save_file(state, short, metadata=dict(logdense_graph=json.dumps(g.to_logdense())))
        with self.assertRaisesRegex(ValueError, "(?s)do not fit.*mods.0.conv.weight"):
            pr.load_logdense_safetensors(short)
        other = pr.Graph(pr.preset("ld-v1-4-12")).to_logdense()
        wrong = os.path.join(self.tmp.name, "wrong.safetensors")
        save_file(model.state_dict(), wrong, metadata=dict(logdense_graph=json.dumps(other)))
        with self.assertRaisesRegex(ValueError, "size mismatch"):
            pr.load_logdense_safetensors(wrong)


def onnx_export(model, path):
    """torch's exporter (the TorchScript one: the dynamo one needs onnxscript, not installed
    here) with the names and dynamic batch of the contract."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        image = model.graph.nodes[0]
        x = torch.randn(2, image["channels"], *image["size"])
        torch.onnx.export(FinalHead(model).eval(), (x,), path, input_names=["image"],
                          output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)


class OnnxCheckTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        torch.set_num_threads(1)

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def check(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = onnx_check.main(list(args))
        return rc, out.getvalue()

    def test_onnx_check(self):
        g = pr.Graph(small_specs()["densenet-tiny"])
        torch.manual_seed(1)
        model = pr.SparseDenseNet(g)
        randomise_bn(model, 2)
        model.eval()
        save_export(model, g.to_logdense(), self.path("w.safetensors"), "densenet-tiny")
        try:
            onnx_export(model, self.path("m.onnx"))
        except Exception as e:  # the exporter's dependencies vary between torch builds
            self.skipTest(f"torch.onnx.export failed here: {e}")
        x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            y = model(x)[-1]
        save_file(dict(input=x, logits=y), self.path("s.safetensors"))
        base = ["--onnx", self.path("m.onnx"), "--sample", self.path("s.safetensors")]
        rc, out = self.check(*base, "--safetensors", self.path("w.safetensors"))
        self.assertEqual(rc, 0, out)
        for line in ("ok    dynamic batch", "ok    onnxruntime, first row alone (batch 1)",
                     "ok    pytorch reference (densenet-tiny)", "all checks passed"):
            self.assertIn(line, out)

        save_file(dict(input=x, logits=y * 1.001), self.path("off.safetensors"))
        rc, out = self.check("--onnx", self.path("m.onnx"), "--sample",
                             self.path("off.safetensors"))
        self.assertEqual(rc, 1, out)
        self.assertIn("FAIL  onnxruntime, sample (batch 3)", out)
        rc, out = self.check("--onnx", self.path("m.onnx"), "--sample",
                             self.path("off.safetensors"), "--tolerance", "2e-3")
        self.assertEqual(rc, 0, out)

        # A one-row sample runs the row twice.
        save_file(dict(input=x[:1].contiguous(), logits=y[:1].contiguous()),
                  self.path("one.safetensors"))
        rc, out = self.check("--onnx", self.path("m.onnx"), "--sample",
                             self.path("one.safetensors"))
        self.assertEqual(rc, 0, out)
        self.assertIn("the row twice (batch 2)", out)

        # A fixed batch fails the dynamic-batch checks.
        with contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(FinalHead(model).eval(), (x,), self.path("fixed.onnx"),
                              input_names=["image"], output_names=["logits"],
                              opset_version=17, dynamo=False)
        rc, out = self.check("--onnx", self.path("fixed.onnx"), "--sample",
                             self.path("s.safetensors"))
        self.assertEqual(rc, 1, out)
        self.assertIn("FAIL  dynamic batch", out)
        self.assertIn("FAIL  onnxruntime, first row alone", out)

    def test_bad_input(self):
        save_file(dict(image=torch.zeros(1, 3, 4, 4)), self.path("noinput.safetensors"))
        with open(self.path("junk.onnx"), "wb") as f:
            f.write(b"not a model")
        for args, needle in (
                (["--onnx", "missing.onnx", "--sample", self.path("noinput.safetensors")],
                 "no tensor 'input' or 'logits'"),
                (["--onnx", "missing.onnx", "--sample", "missing.safetensors"],
                 "no such file"),
        ):
            rc, out = self.check(*args)
            self.assertEqual(rc, 2, out)
            self.assertIn(needle, out)
        save_file(dict(input=torch.zeros(1, 3, 4, 4), logits=torch.zeros(1, 5)),
                  self.path("ok.safetensors"))
        rc, out = self.check("--onnx", self.path("junk.onnx"), "--sample",
                             self.path("ok.safetensors"))
        self.assertEqual(rc, 2, out)
        self.assertIn("not an ONNX model", out)


class TorchvisionMappingTest(unittest.TestCase):
    def test_tiny_mapping(self):
        torch.set_num_threads(1)
        tv = tvd.tiny_model(seed=11)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(12))
        with torch.no_grad():
            want = tv(x)
        got = tvd.reference_logits(tv.state_dict(), tvd.TINY, x)
        self.assertLess(tvd.diffs(got, want)[1], 1e-5)
        # Without the head's permutation the logits differ: the test would see a wrong order.
        spec = tvd.logdense_spec(**tvd.TINY)
        g = pr.Graph(spec)
        state = tvd.torchvision_to_logdense(tv.state_dict(), g, permute_head=False)
        model = pr.SparseDenseNet(g)
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            wrong = model.eval()(x)[-1]
        self.assertGreater(tvd.diffs(wrong, want)[1], 1e-3)


if __name__ == "__main__":
    unittest.main()
