//! ONNX export: the network in inference mode as a graph of standard operators (opset 17,
//! IR version 8), which ONNX Runtime, TensorRT, tract and PyTorch's importers run.
//!
//! Our fused kernels never concatenate a layer's inputs; no standard operator does that, so
//! the export concatenates them (`Concat`) and runs `BatchNormalization`, `Relu` and `Conv`
//! on the result, as PyTorch's DenseNet does. Auxiliary (deep-supervision) heads are left
//! out: the graph computes the final prediction. The batch axis is dynamic (`batch`); the
//! image's height and width are the network's.
//!
//! We lower the graph ourselves rather than through burn-onnx's trace exporter (0.22): that
//! exporter has no `ConvTranspose`, which every FC network needs, and it needs burn built
//! with its `capture` and `ir` features. Walking our [`logdense_graph::NetGraph`] gives one
//! ONNX node per operation, with initializers named as in the safetensors export
//! ([`crate::interop::state_dict::Naming::Reference`]).

pub mod proto;

use crate::interop::state_dict::{self, Array, Naming, StateDictError};
use crate::SparseDenseNet;
use logdense_graph::{Op, Pool, TaskKind};
use prost::Message;
use proto::*;
use std::collections::HashMap;

/// The operator set the export targets.
pub const OPSET: i64 = 17;
/// The ONNX IR version of opset 17.
pub const IR_VERSION: i64 = 8;
/// The graph's input: the normalised image batch `[batch, C, H, W]`.
pub const INPUT_NAME: &str = "image";
/// The graph's output: `[batch, classes]` logits, or `[batch, classes, H, W]` for segmentation.
pub const OUTPUT_NAME: &str = "logits";

/// Every batch norm logdense builds uses burn's default epsilon.
const BN_EPSILON: f32 = 1e-5;

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::INTS),
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::INT),
        i: Some(i),
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::FLOAT),
        f: Some(f),
        ..Default::default()
    }
}

fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::STRING),
        s: Some(s.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    }
}

fn fixed(n: usize) -> Dimension {
    Dimension {
        dim_value: Some(n as i64),
        dim_param: None,
    }
}

fn batch() -> Dimension {
    Dimension {
        dim_value: None,
        dim_param: Some("batch".into()),
    }
}

/// Builds the node list and initializers.
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    weights: HashMap<String, Array>,
    counter: usize,
}

impl Graph {
    /// Adds `op_type(inputs)` and returns its output's name (`{prefix}/{op_type}{n}`).
    fn op(
        &mut self,
        prefix: &str,
        op_type: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.counter += 1;
        let output = format!("{prefix}/{}{}", op_type.to_lowercase(), self.counter);
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: Some(output.clone()),
            op_type: Some(op_type.into()),
            attribute: attrs,
        });
        output
    }

    /// The named weight as an initializer (once), returning its name.
    fn weight(&mut self, name: &str) -> String {
        if let Some(a) = self.weights.remove(name) {
            self.initializers.push(TensorProto {
                dims: a.shape.iter().map(|&d| d as i64).collect(),
                data_type: Some(data_type::FLOAT),
                name: Some(name.into()),
                raw_data: Some(a.values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            });
        }
        name.into()
    }

    fn const_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(data_type::INT64),
            name: Some(name.into()),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        name.into()
    }

    /// `relu(batch_norm(x))` with the running statistics of the BN named `bn`.
    fn bn_relu(&mut self, prefix: &str, x: String, bn: &str) -> String {
        let inputs = vec![
            x,
            self.weight(&format!("{bn}.weight")),
            self.weight(&format!("{bn}.bias")),
            self.weight(&format!("{bn}.running_mean")),
            self.weight(&format!("{bn}.running_var")),
        ];
        let y = self.op(
            prefix,
            "BatchNormalization",
            inputs,
            vec![attr_float("epsilon", BN_EPSILON)],
        );
        self.op(prefix, "Relu", vec![y], vec![])
    }

    /// A `k x k` convolution with padding `k / 2` and the given stride.
    fn conv(
        &mut self,
        prefix: &str,
        x: String,
        conv: &str,
        k: usize,
        stride: usize,
        bias: bool,
    ) -> String {
        let mut inputs = vec![x, self.weight(&format!("{conv}.weight"))];
        if bias {
            inputs.push(self.weight(&format!("{conv}.bias")));
        }
        let p = (k / 2) as i64;
        let attrs = vec![
            attr_ints("kernel_shape", &[k as i64, k as i64]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("strides", &[stride as i64, stride as i64]),
        ];
        self.op(prefix, "Conv", inputs, attrs)
    }
}

/// The ONNX model of `net` in inference mode, as the bytes of a `.onnx` file. `preset`, when
/// known, is recorded in the model's metadata.
pub fn export_onnx(net: &SparseDenseNet, preset: Option<&str>) -> Result<Vec<u8>, StateDictError> {
    let graph = &net.graph;
    let weights: HashMap<String, Array> = state_dict::export(net, Naming::Reference)?
        .into_iter()
        .collect();
    let mut g = Graph {
        nodes: Vec::new(),
        initializers: Vec::new(),
        weights,
        counter: 0,
    };
    let mut values: Vec<Option<String>> = vec![None; graph.nodes.len()];
    values[0] = Some(INPUT_NAME.into());
    let final_head = graph.nodes.len() - 1;
    for (k, node) in graph.nodes.iter().enumerate().skip(1) {
        let m = k - 1;
        let p = format!("mods.{m}");
        if let Op::Head {
            is_final: false, ..
        } = node.op
        {
            continue;
        }
        let parts: Vec<String> = node
            .inputs
            .iter()
            .map(|&i| values[i].clone().expect("inputs are computed before use"))
            .collect();
        let x = match parts.len() {
            1 => parts.into_iter().next().expect("one part"),
            _ => g.op(&p, "Concat", parts, vec![attr_int("axis", 1)]),
        };
        let y = match node.op {
            Op::Input => unreachable!("only node 0 is the input"),
            Op::Stem {
                kernel,
                stride,
                max_pool,
            } => {
                let y = g.conv(&p, x, &format!("{p}.conv"), kernel, stride, false);
                match max_pool {
                    true => {
                        let y = g.bn_relu(&p, y, &format!("{p}.bn"));
                        let attrs = vec![
                            attr_ints("kernel_shape", &[3, 3]),
                            attr_ints("pads", &[1, 1, 1, 1]),
                            attr_ints("strides", &[2, 2]),
                        ];
                        g.op(&p, "MaxPool", vec![y], attrs)
                    }
                    false => y,
                }
            }
            Op::Layer { bottleneck, .. } => {
                let mut y = g.bn_relu(&p, x, &format!("{p}.bn"));
                if bottleneck.is_some() {
                    y = g.conv(&p, y, &format!("{p}.bconv"), 1, 1, false);
                    y = g.bn_relu(&p, y, &format!("{p}.bbn"));
                }
                g.conv(&p, y, &format!("{p}.conv"), 3, 1, false)
            }
            Op::Down { pool } => {
                let y = g.bn_relu(&p, x, &format!("{p}.bn"));
                let y = g.conv(&p, y, &format!("{p}.conv"), 1, 1, false);
                let op = match pool {
                    Pool::Avg => "AveragePool",
                    Pool::Max => "MaxPool",
                };
                g.op(
                    &p,
                    op,
                    vec![y],
                    vec![
                        attr_ints("kernel_shape", &[2, 2]),
                        attr_ints("strides", &[2, 2]),
                    ],
                )
            }
            Op::Up { pre_activation, .. } => {
                let y = match pre_activation {
                    true => g.bn_relu(&p, x, &format!("{p}.bn")),
                    false => x,
                };
                let w = g.weight(&format!("{p}.deconv.weight"));
                let attrs = vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("strides", &[2, 2]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_ints("output_padding", &[1, 1]),
                ];
                let y = g.op(&p, "ConvTranspose", vec![y, w], attrs);
                // The transposed convolution doubles the input; the node is cropped (Slice)
                // or zero-padded at the bottom and right (Pad) to the size of the layer it
                // mirrors, as the network does at run time.
                let (ih, iw) = node.in_size;
                let (oh, ow) = (2 * ih, 2 * iw);
                let (th, tw) = node.size;
                let mut y = y;
                if oh > th || ow > tw {
                    let starts = g.const_i64(&format!("{p}.crop_starts"), &[0, 0]);
                    let ends = g.const_i64(
                        &format!("{p}.crop_ends"),
                        &[th.min(oh) as i64, tw.min(ow) as i64],
                    );
                    let axes = g.const_i64(&format!("{p}.crop_axes"), &[2, 3]);
                    y = g.op(&p, "Slice", vec![y, starts, ends, axes], vec![]);
                }
                if oh < th || ow < tw {
                    let (dh, dw) = (th.saturating_sub(oh) as i64, tw.saturating_sub(ow) as i64);
                    let pads = g.const_i64(&format!("{p}.pads"), &[0, 0, 0, 0, 0, 0, dh, dw]);
                    y = g.op(
                        &p,
                        "Pad",
                        vec![y, pads],
                        vec![attr_string("mode", "constant")],
                    );
                }
                y
            }
            Op::Head { task, .. } => {
                let y = g.bn_relu(&p, x, &format!("{p}.bn"));
                match task {
                    TaskKind::Classify => {
                        let y = g.op(&p, "GlobalAveragePool", vec![y], vec![]);
                        let y = g.op(&p, "Flatten", vec![y], vec![attr_int("axis", 1)]);
                        let w = g.weight(&format!("{p}.linear.weight"));
                        let b = g.weight(&format!("{p}.linear.bias"));
                        g.op(&p, "Gemm", vec![y, w, b], vec![attr_int("transB", 1)])
                    }
                    TaskKind::Segment => {
                        let y = g.conv(&p, y, &format!("{p}.conv"), 1, 1, true);
                        if node.size == node.in_size {
                            y
                        } else {
                            // Bilinear resize to the image (align_corners = false is ONNX's
                            // half_pixel), to `[batch, classes, H, W]` with the batch read at
                            // run time.
                            let shape = g.op(&p, "Shape", vec![y.clone()], vec![]);
                            let s0 = g.const_i64(&format!("{p}.nc_starts"), &[0]);
                            let s1 = g.const_i64(&format!("{p}.nc_ends"), &[2]);
                            let nc = g.op(&p, "Slice", vec![shape, s0, s1], vec![]);
                            let hw = g.const_i64(
                                &format!("{p}.hw"),
                                &[node.size.0 as i64, node.size.1 as i64],
                            );
                            let sizes = g.op(&p, "Concat", vec![nc, hw], vec![attr_int("axis", 0)]);
                            let attrs = vec![
                                attr_string("mode", "linear"),
                                attr_string("coordinate_transformation_mode", "half_pixel"),
                            ];
                            g.op(
                                &p,
                                "Resize",
                                vec![y, String::new(), String::new(), sizes],
                                attrs,
                            )
                        }
                    }
                }
            }
        };
        values[k] = Some(y);
    }
    // The final prediction under the output's name.
    let last = values[final_head]
        .take()
        .expect("the final head is computed");
    g.nodes
        .iter_mut()
        .rev()
        .find(|n| n.output.first() == Some(&last))
        .expect("the final head has a node")
        .output = vec![OUTPUT_NAME.into()];

    let [c, h, w] = graph.spec.input;
    let head = &graph.nodes[final_head];
    let out_dims = match graph.task {
        TaskKind::Classify => vec![batch(), fixed(head.channels)],
        TaskKind::Segment => vec![
            batch(),
            fixed(head.channels),
            fixed(head.size.0),
            fixed(head.size.1),
        ],
    };
    let mut metadata = vec![StringStringEntryProto {
        key: Some("logdense_spec".into()),
        value: Some(serde_json::to_string(&graph.spec).expect("a spec always serialises")),
    }];
    if let Some(p) = preset {
        metadata.push(StringStringEntryProto {
            key: Some("logdense_preset".into()),
            value: Some(p.into()),
        });
    }
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("logdense".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some("A logdense network in inference mode (final head only).".into()),
        graph: Some(GraphProto {
            node: g.nodes,
            name: Some(preset.unwrap_or("logdense").into()),
            initializer: g.initializers,
            input: vec![value_info(
                INPUT_NAME,
                vec![batch(), fixed(c), fixed(h), fixed(w)],
            )],
            output: vec![value_info(OUTPUT_NAME, out_dims)],
        }),
        metadata_props: metadata,
    };
    Ok(model.encode_to_vec())
}
