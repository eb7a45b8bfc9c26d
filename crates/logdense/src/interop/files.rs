//! State-dict files: safetensors (read and written, with our metadata) and PyTorch's
//! `.pt`/`.pth` (read, through burn-store's pickle reader). The format is told by the file's
//! bytes, not its name, so a misnamed file is still read, and a file of neither kind is
//! refused with what its first bytes look like.

use crate::interop::state_dict::{is_bookkeeping, Array};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The metadata key holding the network's graph (JSON of [`logdense_graph::NetGraph`]).
pub const META_GRAPH: &str = "logdense_graph";
/// The metadata key holding the preset name the network was built from, if any.
pub const META_PRESET: &str = "logdense_preset";
/// The metadata key holding the training state's normalisation and class names (JSON).
pub const META_DATA: &str = "logdense_data";

/// Why a state-dict file could not be read or written. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FileError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> FileError {
    FileError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A file's tensors as f32 arrays by name, and its string metadata (safetensors only).
#[derive(Debug, Default)]
pub struct StateDictFile {
    /// Every floating-point tensor, converted to f32; integer tensors PyTorch keeps as
    /// bookkeeping (`num_batches_tracked`) are left out.
    pub tensors: BTreeMap<String, Array>,
    /// The safetensors header's `__metadata__` (empty for PyTorch files).
    pub metadata: HashMap<String, String>,
}

/// Which kind of file the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// safetensors: a little-endian u64 header length, then a JSON header.
    Safetensors,
    /// PyTorch's `torch.save`: a ZIP archive (or the legacy pickle stream).
    Pytorch,
}

/// Tells the format from the first bytes: a ZIP or pickle stream is PyTorch's, an 8-byte
/// length followed by `{` is safetensors.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) {
        return Some(Format::Pytorch);
    }
    if bytes.len() >= 9 && bytes[8] == b'{' {
        return Some(Format::Safetensors);
    }
    None
}

fn f32s(dtype: &str, bytes: &[u8]) -> Option<Vec<f32>> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    Some(match dtype {
        "f32" => chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
        "f64" => chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        "f16" => chunks(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "bf16" => chunks(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Reads a safetensors or PyTorch state dict.
pub fn read_state_dict(path: &Path) -> Result<StateDictFile, FileError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    match sniff(&bytes) {
        Some(Format::Safetensors) => parse_safetensors(&bytes, path),
        // PyTorch's tensors live in the archive's other entries: the reader opens the file.
        Some(Format::Pytorch) => read_pytorch(path),
        None => Err(err(
            path,
            format!(
                "neither a safetensors file nor a PyTorch .pt/.pth file (it starts with {:02x?})",
                &bytes[..bytes.len().min(8)]
            ),
        )),
    }
}

/// Parses safetensors bytes.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<StateDictFile, FileError> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| err(path, format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| err(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = StateDictFile {
        metadata: meta.metadata().clone().unwrap_or_default(),
        ..Default::default()
    };
    for (name, view) in st.tensors() {
        let dtype = format!("{:?}", view.dtype()).to_lowercase();
        match f32s(&dtype, view.data()) {
            Some(values) => {
                out.tensors.insert(
                    name,
                    Array {
                        shape: view.shape().to_vec(),
                        values,
                    },
                );
            }
            None if is_bookkeeping(&name) => {}
            None => {
                return Err(err(
                    path,
                    format!("key {name}: dtype {dtype} is not a floating-point type"),
                ))
            }
        }
    }
    Ok(out)
}

/// Reads a PyTorch `torch.save` file (through burn-store's pickle reader).
pub fn read_pytorch(path: &Path) -> Result<StateDictFile, FileError> {
    use burn::store::pytorch_reader::{DType, PytorchReader};
    let reader = PytorchReader::new(path)
        .map_err(|e| err(path, format!("not a readable PyTorch file: {e}")))?;
    let mut out = StateDictFile::default();
    for (name, t) in reader.tensors() {
        let dtype = match t.dtype() {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            _ if is_bookkeeping(name) => continue,
            other => {
                return Err(err(
                    path,
                    format!("key {name}: dtype {other:?} is not a floating-point type"),
                ))
            }
        };
        let bytes = t
            .read()
            .map_err(|e| err(path, format!("key {name}: {e}")))?;
        let values = f32s(dtype, &bytes).expect("a floating-point dtype");
        out.tensors.insert(
            name.clone(),
            Array {
                shape: t.shape().to_vec(),
                values,
            },
        );
    }
    Ok(out)
}

/// A tensor to write: f32 values, or an i64 scalar (PyTorch's `num_batches_tracked`).
pub enum Stored {
    /// f32 values in row-major order.
    F32(Array),
    /// One i64 value of shape `[]`.
    I64Scalar(i64),
}

/// safetensors bytes of `tensors` with `metadata` in the header.
pub fn safetensors_bytes(
    tensors: Vec<(String, Stored)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let bytes: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, t)| match t {
            Stored::F32(a) => (
                name,
                a.shape,
                safetensors::Dtype::F32,
                a.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            Stored::I64Scalar(v) => (
                name,
                vec![],
                safetensors::Dtype::I64,
                v.to_le_bytes().to_vec(),
            ),
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, dtype, data)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata))
}
