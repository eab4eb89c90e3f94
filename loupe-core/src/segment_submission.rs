//! Submission files of the 2019 segment task (temporal localisation): header
//! `Class,Segments`, then one row per class, `class,vid:start vid:start ...`, the
//! class's segments by decreasing confidence. Only the order is written (no scores),
//! as the starter code's `inference.py --segment_labels` does.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The header of a segment submission.
pub const SEGMENT_SUBMISSION_HEADER: &str = "Class,Segments";

/// One segment: the video id and the segment's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentId {
    /// The video id.
    pub video: String,
    /// The first frame (0, 5, 10, ...).
    pub start: u32,
}

/// One class row of a segment submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRow {
    /// The class.
    pub class: u32,
    /// Its segments, most confident first.
    pub segments: Vec<SegmentId>,
}

/// Why a segment submission could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SegmentSubmissionError {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no class row (expected `{SEGMENT_SUBMISSION_HEADER}` and one row per class)")]
    Empty { path: PathBuf },
    #[error("{path}:{line}: {problem}")]
    Row { path: PathBuf, line: usize, problem: String },
    #[error("{path}:{line}: class {class} has a second row (the first is on line {first}); one row per class is expected")]
    DuplicateClass { path: PathBuf, line: usize, class: u32, first: usize },
}

/// Writes the header and the rows; entries are separated by single spaces.
pub fn write_segment_submission<W: Write>(
    mut out: W,
    rows: impl IntoIterator<Item = SegmentRow>,
) -> std::io::Result<()> {
    writeln!(out, "{SEGMENT_SUBMISSION_HEADER}")?;
    for row in rows {
        write!(out, "{},", row.class)?;
        for (i, s) in row.segments.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(out, "{sep}{}:{}", s.video, s.start)?;
        }
        writeln!(out)?;
    }
    out.flush()
}

/// Reads a segment submission. The `Class,Segments` header is optional (Google's
/// evaluation script wants it removed, Kaggle wants it present); entries may be
/// separated by any whitespace, and line ends (`\n` or `\r\n`) are not part of the last
/// entry. A class with two rows is an error (Google's script silently keeps the last);
/// a segment listed twice in a row is kept twice, as the official metric counts it.
pub fn read_segment_submission(path: &Path) -> Result<Vec<SegmentRow>, SegmentSubmissionError> {
    let io = |source| SegmentSubmissionError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut rows = Vec::new();
    let mut lines_of: HashMap<u32, usize> = HashMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = i + 1;
        let line = line.map_err(io)?;
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || (number == 1 && line == SEGMENT_SUBMISSION_HEADER) {
            continue;
        }
        let bad =
            |problem: String| SegmentSubmissionError::Row { path: path.to_path_buf(), line: number, problem };
        let (class, entries) = line.split_once(',').ok_or_else(|| {
            bad(format!("expected `class,vid:start vid:start ...`, found `{}`", shorten(line)))
        })?;
        let class: u32 = class.trim().parse().map_err(|_| {
            bad(format!("expected a class index before the comma, found `{}`", shorten(class)))
        })?;
        if let Some(first) = lines_of.insert(class, number) {
            return Err(SegmentSubmissionError::DuplicateClass {
                path: path.to_path_buf(),
                line: number,
                class,
                first,
            });
        }
        let segments = entries
            .split_whitespace()
            .map(|entry| {
                entry
                    .rsplit_once(':')
                    .filter(|(video, _)| !video.is_empty())
                    .and_then(|(video, start)| {
                        Some(SegmentId { video: video.to_string(), start: start.parse().ok()? })
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "expected `videoid:start` (start a frame index), found `{}`",
                            shorten(entry)
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        rows.push(SegmentRow { class, segments });
    }
    if rows.is_empty() {
        return Err(SegmentSubmissionError::Empty { path: path.to_path_buf() });
    }
    Ok(rows)
}

/// The first 40 characters of `text`, for error messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<SegmentRow>, SegmentSubmissionError> {
        let path = std::env::temp_dir().join(format!(
            "loupe-segsub-{}-{:x}.csv",
            std::process::id(),
            crate::data::sampling::id_hash(text)
        ));
        std::fs::write(&path, text).unwrap();
        let rows = read_segment_submission(&path);
        std::fs::remove_file(&path).unwrap();
        rows
    }

    #[test]
    fn rows_round_trip_with_and_without_header() {
        let rows = vec![
            SegmentRow {
                class: 3,
                segments: vec![
                    SegmentId { video: "ab:c".into(), start: 5 },
                    SegmentId { video: "x".into(), start: 0 },
                ],
            },
            SegmentRow { class: 9, segments: vec![] },
        ];
        let mut text = Vec::new();
        write_segment_submission(&mut text, rows.clone()).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text, "Class,Segments\n3,ab:c:5 x:0\n9,\n");
        assert_eq!(read(&text).unwrap(), rows);
        assert_eq!(read(&text.replacen("Class,Segments\n", "", 1).replace('\n', "\r\n")).unwrap(), rows);
    }

    #[test]
    fn malformed_rows_name_the_line() {
        let e = read("Class,Segments\n3,a:5\n4,a:five\n").unwrap_err().to_string();
        assert!(e.ends_with(":3: expected `videoid:start` (start a frame index), found `a:five`"), "{e}");
        let e = read("3,a:5\n3,b:0\n").unwrap_err().to_string();
        assert!(
            e.ends_with(
                ":2: class 3 has a second row (the first is on line 1); one row per class is expected"
            ),
            "{e}"
        );
        assert!(read("Class,Segments\n").unwrap_err().to_string().contains("no class row"));
        assert!(read("x,a:5\n").unwrap_err().to_string().contains("expected a class index"));
    }
}
