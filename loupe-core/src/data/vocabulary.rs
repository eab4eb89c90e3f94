//! YouTube-8M's `vocabulary.csv`: class index -> name (and vertical).

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{DataError, Result};

/// The header of the 2018 `vocabulary.csv`.
pub const VOCABULARY_HEADER: [&str; 9] = [
    "Index",
    "TrainVideoCount",
    "KnowledgeGraphId",
    "Name",
    "WikiUrl",
    "Vertical1",
    "Vertical2",
    "Vertical3",
    "WikiDescription",
];

/// One class of the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VocabularyEntry {
    /// The label index used in the records.
    pub index: u32,
    /// Training videos carrying the label.
    pub train_video_count: u64,
    /// Knowledge Graph id, e.g. `/m/03bt1gh`.
    pub knowledge_graph_id: String,
    /// Human-readable name.
    pub name: String,
    /// First vertical (category), may be empty.
    pub vertical: String,
}

/// Class index -> entry.
///
/// ```
/// use loupe_core::data::Vocabulary;
///
/// let csv = "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n\
///            0,378135,/m/03bt1gh,Game,https://en.wikipedia.org/wiki/Game,Games,,,\"A game, played.\"\n";
/// let vocabulary = Vocabulary::parse(csv, "vocabulary.csv")?;
/// assert_eq!(vocabulary.name(0), Some("Game"));
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vocabulary {
    entries: BTreeMap<u32, VocabularyEntry>,
}

impl Vocabulary {
    /// Reads `vocabulary.csv` at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            action: "reading",
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses CSV text; `path` is named in errors.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let error =
            |line: usize, reason: String| DataError::Vocabulary { path: path.to_path_buf(), line, reason };
        let mut rows = parse_csv(text).map_err(|(line, reason)| error(line, reason))?.into_iter();
        let (line, header) = rows.next().ok_or_else(|| error(1, "empty file: expected a header".into()))?;
        if header.first().map(|h| h.trim_start_matches('\u{feff}')) != Some(VOCABULARY_HEADER[0])
            || header.len() < 4
            || header[1..4] != VOCABULARY_HEADER[1..4]
        {
            return Err(error(
                line,
                format!(
                    "expected the header `{}`, found `{}`",
                    VOCABULARY_HEADER.join(","),
                    header.join(",")
                ),
            ));
        }
        let mut entries = BTreeMap::new();
        for (line, fields) in rows {
            if fields.len() == 1 && fields[0].is_empty() {
                continue; // blank line
            }
            if fields.len() != header.len() {
                return Err(error(line, format!("expected {} fields, found {}", header.len(), fields.len())));
            }
            let index: u32 = fields[0]
                .trim()
                .parse()
                .map_err(|_| error(line, format!("Index `{}` is not a non-negative integer", fields[0])))?;
            let train_video_count: u64 = fields[1].trim().parse().map_err(|_| {
                error(line, format!("TrainVideoCount `{}` is not a non-negative integer", fields[1]))
            })?;
            let entry = VocabularyEntry {
                index,
                train_video_count,
                knowledge_graph_id: fields[2].clone(),
                name: fields[3].clone(),
                vertical: fields.get(5).cloned().unwrap_or_default(),
            };
            if entries.insert(index, entry).is_some() {
                return Err(error(line, format!("Index {index} appears twice")));
            }
        }
        Ok(Self { entries })
    }

    /// The name of class `index`.
    pub fn name(&self, index: u32) -> Option<&str> {
        self.entries.get(&index).map(|e| e.name.as_str())
    }

    /// The entry of class `index`.
    pub fn entry(&self, index: u32) -> Option<&VocabularyEntry> {
        self.entries.get(&index)
    }

    /// Number of classes listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no class is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries by increasing index.
    pub fn entries(&self) -> impl Iterator<Item = &VocabularyEntry> {
        self.entries.values()
    }

    /// Writes the vocabulary as CSV (the 2018 columns; Wikipedia fields left empty
    /// except the description, which is `description(entry)`).
    pub fn to_csv(&self, description: impl Fn(&VocabularyEntry) -> String) -> String {
        let mut out = VOCABULARY_HEADER.join(",");
        out.push('\n');
        for e in self.entries.values() {
            let fields = [
                e.index.to_string(),
                e.train_video_count.to_string(),
                e.knowledge_graph_id.clone(),
                e.name.clone(),
                String::new(),
                e.vertical.clone(),
                String::new(),
                String::new(),
                description(e),
            ];
            let quoted: Vec<String> = fields.iter().map(|f| quote_csv(f)).collect();
            out.push_str(&quoted.join(","));
            out.push('\n');
        }
        out
    }

    /// A vocabulary from entries (later duplicates replace earlier ones).
    pub fn from_entries(entries: impl IntoIterator<Item = VocabularyEntry>) -> Self {
        Self { entries: entries.into_iter().map(|e| (e.index, e)).collect() }
    }
}

fn quote_csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Splits CSV text into rows of fields (RFC 4180: quoted fields may hold commas,
/// newlines and doubled quotes). Each row comes with its 1-based starting line.
fn parse_csv(text: &str) -> std::result::Result<Vec<(usize, Vec<String>)>, (usize, String)> {
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut row_line = 1;
    let mut in_quotes = false;
    let mut quote_line = 0;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    if !matches!(chars.peek(), None | Some(',') | Some('\n') | Some('\r')) {
                        return Err((line, "unexpected character after a closing quote".into()));
                    }
                }
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                quote_line = line;
                at_field_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                rows.push((row_line, std::mem::take(&mut fields)));
                line += 1;
                row_line = line;
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        return Err((quote_line, "unterminated quoted field".into()));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        rows.push((row_line, fields));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription";

    #[test]
    fn quoted_fields_with_commas_quotes_and_newlines() {
        let csv = format!(
            "{HEADER}\r\n3,10,/m/x,\"Cars, trucks\",u,Autos,,,\"He said \"\"hi\"\"\nsecond line\"\n7,2,/m/y,Cat,,Pets,,,\n"
        );
        let v = Vocabulary::parse(&csv, "v.csv").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v.name(3), Some("Cars, trucks"));
        assert_eq!(v.entry(7).unwrap().vertical, "Pets");
        assert_eq!(v.name(4), None);
    }

    #[test]
    fn malformed_rows_name_the_line() {
        let bad_count = format!("{HEADER}\n0,1,/m/a,A,,,,,\n1,2,/m/b\n");
        let e = Vocabulary::parse(&bad_count, "v.csv").unwrap_err().to_string();
        assert!(e.contains("v.csv: line 3") && e.contains("expected 9 fields, found 3"), "{e}");

        let bad_index = format!("{HEADER}\nx,1,/m/a,A,,,,,\n");
        let e = Vocabulary::parse(&bad_index, "v.csv").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("Index `x`"), "{e}");

        let unterminated = format!("{HEADER}\n0,1,/m/a,\"A,,,,,\n");
        let e = Vocabulary::parse(&unterminated, "v.csv").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("unterminated"), "{e}");

        let duplicate = format!("{HEADER}\n0,1,/m/a,A,,,,,\n0,1,/m/a,A,,,,,\n");
        assert!(Vocabulary::parse(&duplicate, "v.csv").unwrap_err().to_string().contains("twice"));

        let e = Vocabulary::parse("id,name\n", "v.csv").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("expected the header"), "{e}");
    }

    #[test]
    fn csv_round_trip() {
        let v = Vocabulary::from_entries([VocabularyEntry {
            index: 0,
            train_video_count: 5,
            knowledge_graph_id: "/m/0".into(),
            name: "A \"quoted\", name".into(),
            vertical: "V".into(),
        }]);
        let csv = v.to_csv(|e| format!("About {}, really.", e.name));
        assert_eq!(Vocabulary::parse(&csv, "v.csv").unwrap(), v);
    }
}
