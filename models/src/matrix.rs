//! A dense, row-major `f64` matrix: the training and scoring input of the
//! forest and the scaler.
//!
//! Row-major because scoring walks one row through every tree, and training
//! reads a handful of rows per node; both want a row's features adjacent.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A dense row-major matrix of finite `f64` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// Wraps `data` (row-major, `rows * cols` values).
    ///
    /// Fails when the length does not match or a value is not finite: the
    /// forest's split ranges and the scaler's moments are meaningless with
    /// NaN or infinities in them.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self, Error> {
        if cols == 0 {
            return Err(Error::Shape("a matrix needs at least one column".into()));
        }
        if data.len() != rows * cols {
            return Err(Error::Shape(format!(
                "{} values cannot fill {rows} rows of {cols} columns",
                data.len()
            )));
        }
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "matrix value",
                at: format!("row {}, column {}", pos / cols, pos % cols),
            });
        }
        Ok(Self { rows, cols, data })
    }

    /// Builds a matrix from equally long rows.
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self, Error> {
        let cols = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * cols);
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != cols {
                return Err(Error::Shape(format!(
                    "row {i} has {} values, row 0 has {cols}",
                    r.len()
                )));
            }
            data.extend_from_slice(r);
        }
        Self::new(rows.len(), cols, data)
    }

    /// Number of rows (samples).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` as a slice. Panics when `i` is out of range, like slice indexing.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Value at row `i`, column `j`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// Iterates over the rows.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f64]> {
        self.data.chunks_exact(self.cols)
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_finiteness_are_checked() {
        assert!(Matrix::new(2, 2, vec![1.0; 3]).is_err());
        assert!(Matrix::new(1, 2, vec![1.0, f64::NAN]).is_err());
        assert!(Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0]]).is_err());
        let m = Matrix::from_rows(&[[1.0, 2.0], [3.0, 4.0]]).expect("valid");
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(m.get(0, 1), 2.0);
        assert_eq!(m.iter_rows().count(), 2);
    }
}
