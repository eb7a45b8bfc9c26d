//! SVHN "format 2" (cropped 32x32 digits): `train_32x32.mat` / `test_32x32.mat` (and
//! `extra_32x32.mat`), MAT v5 files with `X` (32x32x3xN uint8, column-major, so each image
//! plane must be transposed into row-major CHW) and `y` (Nx1, labels 1..10, 10 = digit 0).

use std::path::Path;

use crate::error::DataError;
use crate::mat5::{read_mat5, MatData, MatFile, MatVariable};
use crate::set::{ImageSet, Split};

const SVHN_HINT: &str = "SVHN cannot be downloaded here: get format 2 (train_32x32.mat, \
test_32x32.mat from http://ufldl.stanford.edu/housenumbers/) and pass --data DIR.";

/// Loads `train_32x32.mat` or `test_32x32.mat` from `dir`.
pub fn load_svhn(dir: &Path, split: Split) -> Result<ImageSet, DataError> {
    if !dir.is_dir() {
        return Err(DataError::missing(dir, SVHN_HINT));
    }
    let file = match split {
        Split::Train => "train_32x32.mat",
        Split::Test => "test_32x32.mat",
    };
    let path = dir.join(file);
    if !path.is_file() {
        return Err(DataError::missing(&path, SVHN_HINT));
    }
    load_svhn_mat(&path)
}

/// Loads any SVHN format-2 file (e.g. `extra_32x32.mat`), digits as classes 0..9.
pub fn load_svhn_mat(path: &Path) -> Result<ImageSet, DataError> {
    let mat = read_mat5(path)?;
    svhn_from_mat(path, &mat)
}

fn variable<'a>(path: &Path, mat: &'a MatFile, name: &str) -> Result<&'a MatVariable, DataError> {
    let v = mat.get(name).ok_or_else(|| {
        DataError::format(
            path,
            format!("no variable `{name}` (SVHN format 2 has X and y)"),
        )
    })?;
    if let MatData::Unsupported(what) = &v.data {
        return Err(DataError::unsupported(
            path,
            format!("variable `{name}` is a {what}; expected a uint8 or double array"),
        ));
    }
    Ok(v)
}

/// Converts the `X`/`y` variables of a parsed SVHN file into an [`ImageSet`].
pub fn svhn_from_mat(path: &Path, mat: &MatFile) -> Result<ImageSet, DataError> {
    let x = variable(path, mat, "X")?;
    let y = variable(path, mat, "y")?;
    // MATLAB drops trailing singleton dimensions: a one-image file has dims [32, 32, 3].
    let mut dims = x.dims.clone();
    if dims.len() > 4 || dims.iter().skip(4).any(|&d| d != 1) {
        return Err(DataError::format(
            path,
            format!("X has dimensions {:?}, expected HxWxCxN", x.dims),
        ));
    }
    dims.resize(4, 1);
    let (h, w, c, n) = (dims[0], dims[1], dims[2], dims[3]);
    if h == 0 || w == 0 || !(c == 1 || c == 3) {
        return Err(DataError::format(
            path,
            format!("X has dimensions {:?}, expected HxWx3xN", x.dims),
        ));
    }
    if y.data.len() != n {
        return Err(DataError::CountMismatch {
            images_path: path.to_path_buf(),
            labels_path: path.to_path_buf(),
            images: n,
            labels: y.data.len(),
        });
    }
    let values: std::borrow::Cow<[u8]> = match &x.data {
        MatData::U8(v) => std::borrow::Cow::Borrowed(v.as_slice()),
        MatData::F64(v) => std::borrow::Cow::Owned(
            v.iter()
                .map(|&f| {
                    if f.fract() == 0.0 && (0.0..=255.0).contains(&f) {
                        Ok(f as u8)
                    } else {
                        Err(DataError::format(
                            path,
                            format!("X holds {f}, not a pixel value 0..=255"),
                        ))
                    }
                })
                .collect::<Result<Vec<u8>, _>>()?,
        ),
        MatData::Unsupported(_) => unreachable!("rejected by variable()"),
    };
    // Column-major X(row, col, ch, k) is at row + h*(col + w*(ch + c*k)).
    let mut pixels = vec![0u8; values.len()];
    let plane = h * w;
    for (k, img) in values.chunks_exact(plane * c).enumerate() {
        for ch in 0..c {
            let src = &img[ch * plane..(ch + 1) * plane];
            let dst = &mut pixels[(k * c + ch) * plane..(k * c + ch + 1) * plane];
            for col in 0..w {
                for row in 0..h {
                    dst[row * w + col] = src[row + h * col];
                }
            }
        }
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = y.data.get_f64(i).unwrap_or(f64::NAN);
        if v.fract() != 0.0 || !(1.0..=10.0).contains(&v) {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                item: i,
                label: if v.is_finite() { v as i64 } else { i64::MIN },
                expected: "1..=10 (10 means digit 0)".into(),
            });
        }
        labels.push((v as u16) % 10);
    }
    let set = ImageSet {
        channels: c,
        height: h,
        width: w,
        classes: 10,
        class_names: (0..10).map(|d| d.to_string()).collect(),
        pixels,
        labels,
    };
    set.check().map_err(|e| DataError::format(path, e))?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mat5::writer::{Values, Var, Writer};
    use crate::testutil::TempDir;

    /// Builds column-major X for `n` 4x5x3 images where pixel (k, ch, row, col) has a value
    /// computable from its coordinates, plus the expected CHW bytes.
    fn sample(n: usize) -> (Vec<u8>, Vec<u8>) {
        let (h, w, c) = (4, 5, 3);
        let val =
            |k: usize, ch: usize, r: usize, col: usize| (k * 60 + ch * 20 + r * 5 + col) as u8;
        let mut colmajor = vec![0u8; h * w * c * n];
        let mut chw = Vec::new();
        for k in 0..n {
            for ch in 0..c {
                for r in 0..h {
                    for col in 0..w {
                        colmajor[r + h * (col + w * (ch + c * k))] = val(k, ch, r, col);
                        chw.push(val(k, ch, r, col));
                    }
                }
            }
        }
        (colmajor, chw)
    }

    #[test]
    fn uint8_uncompressed_and_double_compressed() {
        let dir = TempDir::new("svhn");
        let (x, chw) = sample(3);
        let y = [10.0, 1.0, 9.0];
        let xf: Vec<f64> = x.iter().map(|&b| f64::from(b)).collect();
        let yb = [10u8, 1, 9];
        let plain = Writer {
            big_endian: false,
            compress: false,
        }
        .file(&[
            Var {
                name: "X",
                class: 9,
                dims: &[4, 5, 3, 3],
                values: Values::U8(&x),
            },
            // y as class double stored in miUINT8, as MATLAB does for small integers.
            Var {
                name: "y",
                class: 6,
                dims: &[3, 1],
                values: Values::U8(&yb),
            },
        ]);
        let zipped = Writer {
            big_endian: false,
            compress: true,
        }
        .file(&[
            Var {
                name: "y",
                class: 6,
                dims: &[3, 1],
                values: Values::F64(&y),
            },
            Var {
                name: "X",
                class: 6,
                dims: &[4, 5, 3, 3],
                values: Values::F64(&xf),
            },
        ]);
        dir.write("train_32x32.mat", &plain);
        dir.write("test_32x32.mat", &zipped);
        for split in [Split::Train, Split::Test] {
            let set = load_svhn(dir.path(), split).unwrap();
            assert_eq!(
                (set.channels, set.height, set.width, set.len()),
                (3, 4, 5, 3)
            );
            assert_eq!(set.pixels, chw);
            assert_eq!(set.labels, vec![0, 1, 9]);
        }
    }

    #[test]
    fn svhn_errors_name_the_file() {
        let dir = TempDir::new("svhn-err");
        let (x, _) = sample(2);
        let write = |name: &str, y: &[f64], xdims: &[usize]| {
            let b = Writer {
                big_endian: false,
                compress: false,
            }
            .file(&[
                Var {
                    name: "X",
                    class: 9,
                    dims: xdims,
                    values: Values::U8(&x),
                },
                Var {
                    name: "y",
                    class: 6,
                    dims: &[y.len(), 1],
                    values: Values::F64(y),
                },
            ]);
            dir.write(name, &b)
        };
        let p = write("range.mat", &[1.0, 11.0], &[4, 5, 3, 2]);
        let e = load_svhn_mat(&p).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelOutOfRange {
                    item: 1,
                    label: 11,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("range.mat"), "{e}");
        let p = write("count.mat", &[1.0, 2.0, 3.0], &[4, 5, 3, 2]);
        let e = load_svhn_mat(&p).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::CountMismatch {
                    images: 2,
                    labels: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("count.mat"), "{e}");
        let p = write("dims.mat", &[1.0, 2.0], &[4, 5, 6]);
        let e = load_svhn_mat(&p).unwrap_err();
        assert!(e.to_string().contains("dims.mat"), "{e}");
        let e = load_svhn(dir.path(), Split::Train).unwrap_err();
        assert!(
            e.to_string().contains("train_32x32.mat") && e.to_string().contains("--data"),
            "{e}"
        );
        // X of an unsupported class (char).
        let b = Writer {
            big_endian: false,
            compress: false,
        }
        .file(&[
            Var {
                name: "X",
                class: 4,
                dims: &[4, 5, 3, 2],
                values: Values::U8(&x),
            },
            Var {
                name: "y",
                class: 6,
                dims: &[2, 1],
                values: Values::F64(&[1.0, 2.0]),
            },
        ]);
        let p = dir.write("char.mat", &b);
        let e = load_svhn_mat(&p).unwrap_err();
        assert!(
            matches!(e, DataError::Unsupported { .. }) && e.to_string().contains("char.mat"),
            "{e}"
        );
    }
}
