//! A reader for MATLAB level-5 MAT-files (the format `save -v7` and scipy write), enough for
//! numeric arrays such as SVHN's `X` and `y`. No crate in our dependency set reads these.
//!
//! Layout: a 128-byte header (text, subsystem offset, version 0x0100, endian indicator "IM"
//! for little-endian files or "MI" for big-endian), then data elements. Each element has an
//! 8-byte tag (type, byte count) — or a 4-byte "small element" tag with the count in the upper
//! 16 bits and up to 4 data bytes — and is padded to 8 bytes, except `miCOMPRESSED` elements
//! (a zlib stream holding one more element). A variable is an `miMATRIX` element whose
//! sub-elements are: array flags (class in the low byte), dimensions, name, real part
//! [, imaginary part]. MATLAB may store a `double` array's values in a smaller type
//! (e.g. `miUINT8`); the stored type, not the class, says how to decode them.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;

use crate::error::{read_file, DataError};

// Data element types.
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

/// The MATLAB class of a variable (array flags, low byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatClass {
    /// `mxCELL_CLASS` (1): a cell array; not decoded.
    Cell,
    /// `mxSTRUCT_CLASS` (2): a structure; not decoded.
    Struct,
    /// `mxOBJECT_CLASS` (3): a MATLAB object; not decoded.
    Object,
    /// `mxCHAR_CLASS` (4): a character array; not decoded.
    Char,
    /// `mxSPARSE_CLASS` (5): a sparse matrix; not decoded.
    Sparse,
    /// `mxDOUBLE_CLASS` (6): 64-bit floating point.
    Double,
    /// `mxSINGLE_CLASS` (7): 32-bit floating point.
    Single,
    /// `mxINT8_CLASS` (8): signed 8-bit integers.
    Int8,
    /// `mxUINT8_CLASS` (9): unsigned 8-bit integers.
    UInt8,
    /// `mxINT16_CLASS` (10): signed 16-bit integers.
    Int16,
    /// `mxUINT16_CLASS` (11): unsigned 16-bit integers.
    UInt16,
    /// `mxINT32_CLASS` (12): signed 32-bit integers.
    Int32,
    /// `mxUINT32_CLASS` (13): unsigned 32-bit integers.
    UInt32,
    /// `mxINT64_CLASS` (14): signed 64-bit integers.
    Int64,
    /// `mxUINT64_CLASS` (15): unsigned 64-bit integers.
    UInt64,
    /// Any other class code (the raw low byte of the array flags); not decoded.
    Other(u8),
}

impl MatClass {
    fn from_code(c: u8) -> Self {
        use MatClass::*;
        match c {
            1 => Cell,
            2 => Struct,
            3 => Object,
            4 => Char,
            5 => Sparse,
            6 => Double,
            7 => Single,
            8 => Int8,
            9 => UInt8,
            10 => Int16,
            11 => UInt16,
            12 => Int32,
            13 => UInt32,
            14 => Int64,
            15 => UInt64,
            o => Other(o),
        }
    }

    /// Numeric (non-sparse) classes are the ones this reader decodes.
    pub fn is_numeric(self) -> bool {
        use MatClass::*;
        matches!(
            self,
            Double | Single | Int8 | UInt8 | Int16 | UInt16 | Int32 | UInt32 | Int64 | UInt64
        )
    }
}

/// The values of a variable, column-major as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// Stored as `miUINT8` (whatever the class): kept as bytes, 1/8 the memory of f64.
    U8(Vec<u8>),
    /// Any other numeric storage type, converted to f64.
    F64(Vec<f64>),
    /// A variable this reader does not decode; the string says what it is.
    Unsupported(String),
}

impl MatData {
    /// Number of values (0 for an unsupported variable).
    pub fn len(&self) -> usize {
        match self {
            MatData::U8(v) => v.len(),
            MatData::F64(v) => v.len(),
            MatData::Unsupported(_) => 0,
        }
    }

    /// Whether there are no values (also true for an unsupported variable).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f64 (None when out of range or unsupported).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            MatData::U8(v) => v.get(i).map(|&x| f64::from(x)),
            MatData::F64(v) => v.get(i).copied(),
            MatData::Unsupported(_) => None,
        }
    }
}

/// One named variable of a MAT-file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatVariable {
    /// The variable's name in the file (e.g. `X`, `y`).
    pub name: String,
    /// The MATLAB class from the array flags (which may differ from the stored value type).
    pub class: MatClass,
    /// MATLAB dimensions, at least 2 (column-major: the first index varies fastest).
    pub dims: Vec<usize>,
    /// The values, column-major, or why they were not decoded.
    pub data: MatData,
}

/// The variables of a MAT-file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    /// The descriptive text at the start of the header.
    pub header_text: String,
    /// Every variable of the file (compressed ones inflated), in file order.
    pub variables: Vec<MatVariable>,
}

impl MatFile {
    /// The first variable called `name`.
    pub fn get(&self, name: &str) -> Option<&MatVariable> {
        self.variables.iter().find(|v| v.name == name)
    }
}

/// Reads and parses a level-5 MAT-file.
pub fn read_mat5(path: &Path) -> Result<MatFile, DataError> {
    let bytes = read_file(path, "No such file.")?;
    parse_mat5(path, &bytes)
}

/// The most bytes the `miCOMPRESSED` elements of one file may inflate to, together: 8 GiB
/// (SVHN's largest file, `extra_32x32.mat`, holds 1.6 GB), or all of memory on 32-bit targets.
pub const MAX_INFLATED: usize = if usize::BITS >= 64 {
    1 << 33
} else {
    usize::MAX
};

/// Parses the bytes of a level-5 MAT-file; `path` is only used in error messages.
pub fn parse_mat5(path: &Path, bytes: &[u8]) -> Result<MatFile, DataError> {
    parse_mat5_limited(path, bytes, MAX_INFLATED)
}

/// [`parse_mat5`] with a bound on what its compressed elements may inflate to, together:
/// more is an error, found before more than `max_inflated + 1` bytes are inflated.
pub fn parse_mat5_limited(
    path: &Path,
    bytes: &[u8],
    max_inflated: usize,
) -> Result<MatFile, DataError> {
    if bytes.len() < 128 {
        return Err(DataError::truncated(
            path,
            format!("{} bytes, a MAT-file header is 128", bytes.len()),
        ));
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(DataError::BadMagic {
                path: path.to_path_buf(),
                found: u32::from(u16::from_be_bytes([other[0], other[1]])),
                expected: u32::from(u16::from_be_bytes(*b"IM")),
                what: "MAT-file v5 endian indicator \"IM\" or \"MI\" at byte 126",
            })
        }
    };
    let header_text = String::from_utf8_lossy(&bytes[..116])
        .trim_end_matches(['\0', ' '])
        .to_string();
    let budget = Cell::new(max_inflated);
    let r = Reader {
        path,
        bytes,
        big_endian,
        budget: &budget,
    };
    let version = r.u16(124)?;
    if version != 0x0100 {
        let detail = if version == 0x0200 {
            "MAT-file v7.3 (HDF5); re-save it with `save -v7` or scipy.io.savemat".to_string()
        } else {
            format!("MAT-file version {version:#06x}, expected 0x0100 (level 5)")
        };
        return Err(DataError::unsupported(path, detail));
    }
    let mut variables = Vec::new();
    r.elements(128, bytes.len(), &mut variables, 0)?;
    Ok(MatFile {
        header_text,
        variables,
    })
}

/// A parsed tag: type, data range, and where the next element starts.
struct Tag {
    ty: u32,
    start: usize,
    end: usize,
    next: usize,
}

struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    big_endian: bool,
    /// Bytes the compressed elements may still inflate to.
    budget: &'a Cell<usize>,
}

impl Reader<'_> {
    fn get<const N: usize>(&self, at: usize) -> Result<[u8; N], DataError> {
        at.checked_add(N)
            .and_then(|end| self.bytes.get(at..end))
            .map(|s| {
                let mut a = [0u8; N];
                a.copy_from_slice(s);
                a
            })
            .ok_or_else(|| {
                DataError::truncated(
                    self.path,
                    format!("needs bytes {at}..{} but has {}", at + N, self.bytes.len()),
                )
            })
    }

    fn u16(&self, at: usize) -> Result<u16, DataError> {
        let b = self.get::<2>(at)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Result<u32, DataError> {
        let b = self.get::<4>(at)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// Reads the tag at `pos`, whose element must end by `limit`.
    fn tag(&self, pos: usize, limit: usize) -> Result<Tag, DataError> {
        let first = self.u32(pos)?;
        if first >> 16 != 0 {
            // Small data element: size in the upper 16 bits, data in the tag's last 4 bytes.
            let size = (first >> 16) as usize;
            if size > 4 {
                return Err(DataError::format(
                    self.path,
                    format!("small data element at byte {pos} claims {size} bytes (max 4)"),
                ));
            }
            if pos + 8 > limit {
                return Err(DataError::truncated(
                    self.path,
                    format!("small data element at byte {pos} runs past byte {limit}"),
                ));
            }
            return Ok(Tag {
                ty: first & 0xffff,
                start: pos + 4,
                end: pos + 4 + size,
                next: pos + 8,
            });
        }
        let size = self.u32(pos + 4)? as usize;
        let start = pos + 8;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= limit)
            .ok_or_else(|| {
                DataError::truncated(
                    self.path,
                    format!(
                    "data element (type {first}) at byte {pos} has {size} bytes but only {} remain",
                    limit.saturating_sub(start)
                ),
                )
            })?;
        // Elements are padded to 8 bytes, except compressed ones; tolerate missing final pad.
        let next = if first == MI_COMPRESSED {
            end
        } else {
            end.div_ceil(8).saturating_mul(8).min(limit)
        };
        Ok(Tag {
            ty: first,
            start,
            end,
            next,
        })
    }

    /// Reads the elements in `pos..limit`, collecting variables (depth guards zlib nesting).
    fn elements(
        &self,
        mut pos: usize,
        limit: usize,
        out: &mut Vec<MatVariable>,
        depth: usize,
    ) -> Result<(), DataError> {
        while pos < limit {
            if limit - pos < 8 {
                // Trailing padding shorter than a tag.
                if self.bytes[pos..limit].iter().all(|&b| b == 0) {
                    break;
                }
                return Err(DataError::truncated(
                    self.path,
                    format!("{} stray bytes at byte {pos}", limit - pos),
                ));
            }
            let tag = self.tag(pos, limit)?;
            let data = &self.bytes[tag.start..tag.end];
            match tag.ty {
                MI_MATRIX => {
                    if let Some(v) = self.matrix(tag.start, tag.end)? {
                        out.push(v);
                    }
                }
                MI_COMPRESSED => {
                    if depth > 0 {
                        return Err(DataError::format(self.path, "nested miCOMPRESSED element"));
                    }
                    let budget = self.budget.get();
                    let mut inner = Vec::new();
                    flate2::read::ZlibDecoder::new(data)
                        .take((budget as u64).saturating_add(1))
                        .read_to_end(&mut inner)
                        .map_err(|e| {
                            DataError::format(
                                self.path,
                                format!(
                                    "bad zlib stream in miCOMPRESSED element at byte {pos}: {e}"
                                ),
                            )
                        })?;
                    if inner.len() > budget {
                        return Err(DataError::unsupported(
                            self.path,
                            format!(
                                "miCOMPRESSED element at byte {pos} inflates past the file's \
                                 limit ({budget} bytes left of it)"
                            ),
                        ));
                    }
                    self.budget.set(budget - inner.len());
                    let sub = Reader {
                        path: self.path,
                        bytes: &inner,
                        big_endian: self.big_endian,
                        budget: self.budget,
                    };
                    sub.elements(0, inner.len(), out, depth + 1)?;
                }
                // Anything else at top level (e.g. subsystem data) carries no variable.
                _ => {}
            }
            pos = tag.next;
        }
        Ok(())
    }

    /// Parses the sub-elements of one `miMATRIX` (its data is `start..end`). Returns `None`
    /// for an empty matrix element (MATLAB writes those for empty cells).
    fn matrix(&self, start: usize, end: usize) -> Result<Option<MatVariable>, DataError> {
        if start == end {
            return Ok(None);
        }
        let flags_tag = self.tag(start, end)?;
        if flags_tag.ty != MI_UINT32 || flags_tag.end - flags_tag.start != 8 {
            return Err(DataError::format(
                self.path,
                format!("array flags at byte {start} are not 8 bytes of miUINT32"),
            ));
        }
        let flags = self.u32(flags_tag.start)?;
        let class = MatClass::from_code((flags & 0xff) as u8);
        let complex = flags & 0x0800 != 0;

        let dims_tag = self.tag(flags_tag.next, end)?;
        let dims_len = dims_tag.end - dims_tag.start;
        if dims_tag.ty != MI_INT32 || dims_len % 4 != 0 || dims_len < 8 {
            return Err(DataError::format(
                self.path,
                format!(
                    "dimensions at byte {} are not >= 2 miINT32 values",
                    flags_tag.next
                ),
            ));
        }
        let mut dims = Vec::with_capacity(dims_len / 4);
        for k in 0..dims_len / 4 {
            let d = self.u32(dims_tag.start + 4 * k)? as i32;
            let d = usize::try_from(d)
                .map_err(|_| DataError::format(self.path, format!("negative dimension {d}")))?;
            dims.push(d);
        }

        let name_tag = self.tag(dims_tag.next, end)?;
        if !matches!(name_tag.ty, MI_INT8 | MI_UINT8 | MI_UTF8) {
            return Err(DataError::format(
                self.path,
                format!(
                    "array name has element type {}, expected miINT8",
                    name_tag.ty
                ),
            ));
        }
        let name = String::from_utf8_lossy(&self.bytes[name_tag.start..name_tag.end]).into_owned();

        let unsupported = |what: String| -> Result<Option<MatVariable>, DataError> {
            Ok(Some(MatVariable {
                name: name.clone(),
                class,
                dims: dims.clone(),
                data: MatData::Unsupported(what),
            }))
        };
        if !class.is_numeric() {
            return unsupported(format!("{class:?} array"));
        }
        if complex {
            return unsupported(format!("complex {class:?} array"));
        }
        let numel = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                DataError::format(
                    self.path,
                    format!("variable {name}: dimensions {dims:?} overflow"),
                )
            })?;

        let real_tag = self.tag(name_tag.next, end)?;
        let data = self.numeric(&name, &real_tag)?;
        if data.len() != numel {
            return Err(DataError::format(
                self.path,
                format!(
                    "variable {name}: {} values stored for dimensions {dims:?} ({numel} values)",
                    data.len()
                ),
            ));
        }
        Ok(Some(MatVariable {
            name,
            class,
            dims,
            data,
        }))
    }

    /// Decodes a numeric data element.
    fn numeric(&self, name: &str, tag: &Tag) -> Result<MatData, DataError> {
        let raw = &self.bytes[tag.start..tag.end];
        let width = match tag.ty {
            MI_INT8 | MI_UINT8 => 1,
            MI_INT16 | MI_UINT16 => 2,
            MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
            MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
            other => {
                return Err(DataError::unsupported(
                    self.path,
                    format!("variable {name}: data element type {other} is not numeric"),
                ))
            }
        };
        if !raw.len().is_multiple_of(width) {
            return Err(DataError::format(
                self.path,
                format!(
                    "variable {name}: {} data bytes is not a multiple of {width}",
                    raw.len()
                ),
            ));
        }
        if tag.ty == MI_UINT8 {
            return Ok(MatData::U8(raw.to_vec()));
        }
        let be = self.big_endian;
        let mut out = Vec::with_capacity(raw.len() / width);
        for c in raw.chunks_exact(width) {
            let v = match (tag.ty, width) {
                (MI_INT8, _) => f64::from(c[0] as i8),
                (_, 2) => {
                    let b = [c[0], c[1]];
                    let u = if be {
                        u16::from_be_bytes(b)
                    } else {
                        u16::from_le_bytes(b)
                    };
                    if tag.ty == MI_INT16 {
                        f64::from(u as i16)
                    } else {
                        f64::from(u)
                    }
                }
                (_, 4) => {
                    let b = [c[0], c[1], c[2], c[3]];
                    let u = if be {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    };
                    match tag.ty {
                        MI_INT32 => f64::from(u as i32),
                        MI_SINGLE => f64::from(f32::from_bits(u)),
                        _ => f64::from(u),
                    }
                }
                _ => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    let u = if be {
                        u64::from_be_bytes(b)
                    } else {
                        u64::from_le_bytes(b)
                    };
                    match tag.ty {
                        MI_DOUBLE => f64::from_bits(u),
                        MI_INT64 => u as i64 as f64,
                        _ => u as f64,
                    }
                }
            };
            out.push(v);
        }
        Ok(MatData::F64(out))
    }
}

/// A minimal level-5 writer: small real MAT-files of uint8 or double variables, the format
/// [`parse_mat5`] reads (the tests and the fuzz corpus write their SVHN files with it).
pub mod writer {
    use std::io::Write;

    /// Stored values of one variable.
    pub enum Values<'a> {
        /// Written as an `miUINT8` element.
        U8(&'a [u8]),
        /// Written as an `miDOUBLE` element.
        F64(&'a [f64]),
    }

    /// One variable to write.
    pub struct Var<'a> {
        /// The variable's name.
        pub name: &'a str,
        /// MATLAB class code: 6 double, 9 uint8.
        pub class: u8,
        /// MATLAB dimensions; their product must equal the number of values.
        pub dims: &'a [usize],
        /// The values, column-major (the first index varies fastest).
        pub values: Values<'a>,
    }

    /// Options of the writer: byte order and compression.
    pub struct Writer {
        /// Writes a big-endian file ("MI") instead of a little-endian one ("IM").
        pub big_endian: bool,
        /// Wraps each variable in an `miCOMPRESSED` (zlib) element, as `save -v7` does.
        pub compress: bool,
    }

    impl Writer {
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        /// A padded element; data of <= 4 bytes uses the small element format.
        fn element(&self, ty: u32, data: &[u8], out: &mut Vec<u8>) {
            if data.len() <= 4 && !data.is_empty() {
                out.extend_from_slice(&self.u32(((data.len() as u32) << 16) | ty));
                out.extend_from_slice(data);
                out.resize(out.len() + 4 - data.len(), 0);
                return;
            }
            out.extend_from_slice(&self.u32(ty));
            out.extend_from_slice(&self.u32(data.len() as u32));
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(8) * 8, 0);
        }

        fn matrix(&self, v: &Var) -> Vec<u8> {
            let mut body = Vec::new();
            let mut flags = Vec::new();
            flags.extend_from_slice(&self.u32(u32::from(v.class)));
            flags.extend_from_slice(&self.u32(0));
            self.element(super::MI_UINT32, &flags, &mut body);
            let dims: Vec<u8> = v.dims.iter().flat_map(|&d| self.u32(d as u32)).collect();
            self.element(super::MI_INT32, &dims, &mut body);
            self.element(super::MI_INT8, v.name.as_bytes(), &mut body);
            match v.values {
                Values::U8(x) => self.element(super::MI_UINT8, x, &mut body),
                Values::F64(x) => {
                    let bytes: Vec<u8> = x
                        .iter()
                        .flat_map(|f| {
                            if self.big_endian {
                                f.to_bits().to_be_bytes()
                            } else {
                                f.to_bits().to_le_bytes()
                            }
                        })
                        .collect();
                    self.element(super::MI_DOUBLE, &bytes, &mut body)
                }
            }
            let mut out = Vec::new();
            out.extend_from_slice(&self.u32(super::MI_MATRIX));
            out.extend_from_slice(&self.u32(body.len() as u32));
            out.extend_from_slice(&body);
            out
        }

        /// The bytes of a whole MAT-file (128-byte header, then `vars` in order).
        pub fn file(&self, vars: &[Var]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut text = b"MATLAB 5.0 MAT-file, written by logdense-data tests".to_vec();
            text.resize(116, b' ');
            out.extend_from_slice(&text);
            out.extend_from_slice(&[0; 8]);
            if self.big_endian {
                out.extend_from_slice(&0x0100u16.to_be_bytes());
                out.extend_from_slice(b"MI");
            } else {
                out.extend_from_slice(&0x0100u16.to_le_bytes());
                out.extend_from_slice(b"IM");
            }
            for v in vars {
                let m = self.matrix(v);
                if self.compress {
                    let mut z =
                        flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                    z.write_all(&m).expect("writing to memory");
                    let z = z.finish().expect("writing to memory");
                    out.extend_from_slice(&self.u32(super::MI_COMPRESSED));
                    out.extend_from_slice(&self.u32(z.len() as u32));
                    out.extend_from_slice(&z);
                } else {
                    out.extend_from_slice(&m);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::writer::{Values, Var, Writer};
    use super::*;

    fn vars<'a>(x: &'a [u8], y: &'a [f64]) -> Vec<Var<'a>> {
        vec![
            Var {
                name: "X",
                class: 9,
                dims: &[2, 3, 2],
                values: Values::U8(x),
            },
            Var {
                name: "yy",
                class: 6,
                dims: &[3, 1],
                values: Values::F64(y),
            },
        ]
    }

    #[test]
    fn round_trip_all_variants() {
        let x: Vec<u8> = (0..12).collect();
        let y = [1.5, -2.0, 1e10];
        for big_endian in [false, true] {
            for compress in [false, true] {
                let bytes = Writer {
                    big_endian,
                    compress,
                }
                .file(&vars(&x, &y));
                let f = parse_mat5(Path::new("t.mat"), &bytes).unwrap();
                assert!(f.header_text.starts_with("MATLAB 5.0"));
                let vx = f.get("X").unwrap();
                assert_eq!(
                    (vx.class, vx.dims.as_slice()),
                    (MatClass::UInt8, &[2, 3, 2][..])
                );
                assert_eq!(vx.data, MatData::U8(x.clone()));
                let vy = f.get("yy").unwrap();
                assert_eq!(vy.class, MatClass::Double);
                assert_eq!(vy.data, MatData::F64(y.to_vec()));
            }
        }
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let p = Path::new("dir/bad.mat");
        let good = Writer {
            big_endian: false,
            compress: false,
        }
        .file(&vars(&[0; 12], &[1.0; 3]));
        let e = parse_mat5(p, &good[..100]).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { .. }) && e.to_string().contains("bad.mat"),
            "{e}"
        );
        for cut in [130, 200, good.len() - 3] {
            let e = parse_mat5(p, &good[..cut]).unwrap_err();
            assert!(e.to_string().contains("dir/bad.mat"), "cut {cut}: {e}");
        }
        let mut wrong = good.clone();
        wrong[126..128].copy_from_slice(b"XX");
        let e = parse_mat5(p, &wrong).unwrap_err();
        assert!(
            matches!(e, DataError::BadMagic { .. }) && e.to_string().contains("bad.mat"),
            "{e}"
        );
        let mut v73 = good.clone();
        v73[124..126].copy_from_slice(&0x0200u16.to_le_bytes());
        let e = parse_mat5(p, &v73).unwrap_err();
        assert!(e.to_string().contains("v7.3"), "{e}");
        let z = Writer {
            big_endian: false,
            compress: true,
        }
        .file(&vars(&[0; 12], &[1.0; 3]));
        let mut zbad = z.clone();
        for b in &mut zbad[140..150] {
            *b ^= 0x5a;
        }
        assert!(parse_mat5(p, &zbad).is_err());
        // Random corruption anywhere must give an error or a result, never a panic.
        for i in 128..good.len() {
            let mut c = good.clone();
            c[i] = c[i].wrapping_add(0x81);
            let _ = parse_mat5(p, &c);
            let mut c = z.clone();
            if i < c.len() {
                c[i] ^= 0xff;
                let _ = parse_mat5(p, &c);
            }
        }
    }

    #[test]
    fn unsupported_class_is_reported_not_fatal() {
        let mut bytes = Writer {
            big_endian: false,
            compress: false,
        }
        .file(&vars(&[0; 12], &[1.0; 3]));
        // Flip X's class byte (first flags word after the matrix tag and flags tag) to char (4).
        let at = 128 + 8 + 8;
        assert_eq!(bytes[at], 9);
        bytes[at] = 4;
        let f = parse_mat5(Path::new("c.mat"), &bytes).unwrap();
        assert!(matches!(f.get("X").unwrap().data, MatData::Unsupported(_)));
        assert_eq!(f.get("yy").unwrap().data.len(), 3);
    }
}
