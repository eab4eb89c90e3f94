//! The matrix views [`super::sgemm`] reads and writes, checked against their buffers.

/// A matrix view of `f32` values that are not changed: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub(super) data: &'a [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row_stride: usize,
    pub(super) col_stride: usize,
}

/// The output matrix: rows of `cols` contiguous values, row `i` starting at
/// `data[i * row_stride]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub(super) data: &'a mut [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row_stride: usize,
}

/// Why a product was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmError {
    /// The view reaches past its buffer.
    #[error(
        "a {rows} x {cols} matrix view with strides ({row_stride}, {col_stride}) needs \
         {needed} elements, its buffer has {len}"
    )]
    OutOfBounds { rows: usize, cols: usize, row_stride: usize, col_stride: usize, needed: usize, len: usize },
    /// The operands' shapes do not chain.
    #[error(
        "cannot multiply a {a_rows} x {a_cols} A by a {b_rows} x {b_cols} B into a {c_rows} x {c_cols} C"
    )]
    Shapes { a_rows: usize, a_cols: usize, b_rows: usize, b_cols: usize, c_rows: usize, c_cols: usize },
    /// The output's rows overlap (`row_stride < cols`).
    #[error("the output's rows overlap: row stride {row_stride} below its {cols} columns")]
    OverlappingRows { cols: usize, row_stride: usize },
}

fn needed(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride + 1
    }
}

impl<'a> MatRef<'a> {
    /// A strided view; refused when it reaches past `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, GemmError> {
        let needed = needed(rows, cols, row_stride, col_stride);
        if needed > data.len() {
            return Err(GemmError::OutOfBounds {
                rows,
                cols,
                row_stride,
                col_stride,
                needed,
                len: data.len(),
            });
        }
        Ok(MatRef { data, rows, cols, row_stride, col_stride })
    }

    /// A row-major `rows x cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, GemmError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transposed view (no copy).
    pub fn transpose(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows and columns.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

impl<'a> MatMut<'a> {
    /// An output view with rows `row_stride` apart; refused when it reaches past `data`
    /// or its rows overlap.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Result<Self, GemmError> {
        let needed = needed(rows, cols, row_stride, 1);
        if needed > data.len() {
            return Err(GemmError::OutOfBounds {
                rows,
                cols,
                row_stride,
                col_stride: 1,
                needed,
                len: data.len(),
            });
        }
        if rows > 1 && row_stride < cols {
            return Err(GemmError::OverlappingRows { cols, row_stride });
        }
        Ok(MatMut { data, rows, cols, row_stride })
    }

    /// A row-major `rows x cols` output.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, GemmError> {
        Self::new(data, rows, cols, cols)
    }
}
