//! Errors of the data phase. In: whatever went wrong finding, reading or checking data files.
//! Out: [`DataError`], whose message names the file and what was expected, with a stable code
//! (band E06xx, one explanation file per code in `src/diagnostics/explain/`) and a help line.

use std::fmt::Write as _;
use std::path::PathBuf;

use thiserror::Error;

/// One place the loader looked for a data directory, for the "not found" message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Searched {
    /// How the place was derived (`path:`, `$SPRS_DATA/mnist`, `./data/mnist`).
    pub how: String,
    /// The directory, or `None` when it could not be formed (`SPRS_DATA` unset).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum DataError {
    #[error("data set `{dataset}` not found; searched {}", searched_list(.searched))]
    NotFound { dataset: String, searched: Vec<Searched> },

    #[error("missing file in `{}`: expected {}", .dir.display(), name_list(.expected))]
    MissingFile { dir: PathBuf, dataset: String, expected: Vec<String> },

    #[error("cannot read `{}`: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("`{}` is not an IDX {what} file: magic number is {found:#010x}, expected {expected:#010x}", .path.display())]
    BadMagic { path: PathBuf, what: &'static str, found: u32, expected: u32 },

    #[error("`{}` {}: expected {expected} bytes ({layout}), found {found}", .path.display(),
        if .found < .expected { "is truncated" } else { "is longer than its header says" })]
    WrongLength { path: PathBuf, expected: u64, found: u64, layout: String },

    #[error("`{}` is not a valid gzip file: {message}", .path.display())]
    CorruptGzip { path: PathBuf, message: String },

    #[error("`{}` holds {images} images but `{}` holds {labels} labels; expected equal counts",
        .images_path.display(), .labels_path.display())]
    CountMismatch { images_path: PathBuf, images: usize, labels_path: PathBuf, labels: usize },

    #[error("`{}`: label {label} of example {index} is out of range; expected 0 to {}",
        .path.display(), .classes - 1)]
    LabelOutOfRange { path: PathBuf, index: usize, label: u8, classes: usize },

    #[error("`{}` holds images of {}; expected {}x{}", .path.display(), dims(.found),
        .expected[0], .expected[1])]
    BadShape { path: PathBuf, found: Vec<u32>, expected: [usize; 2] },

    #[error("`{}` is {len} bytes, not a whole number of {record}-byte {format} records",
        .path.display())]
    RecordLength { path: PathBuf, len: u64, record: usize, format: &'static str },

    #[error("`val: {val}` holds out at least as many examples as the training split has ({train})")]
    ValTooLarge { val: usize, train: usize },

    #[error("the {split} split of `{dataset}` has no examples ({source_desc})")]
    Empty { dataset: String, split: &'static str, source_desc: String },
}

impl DataError {
    /// Every code this phase emits, in order; each has `src/diagnostics/explain/CODE.md`.
    pub const CODES: [&'static str; 12] =
        ["E0601", "E0602", "E0603", "E0604", "E0605", "E0606", "E0607", "E0608", "E0609", "E0610", "E0611", "E0612"];

    /// The stable diagnostic code (never reused once assigned).
    pub fn code(&self) -> &'static str {
        match self {
            DataError::NotFound { .. } => "E0601",
            DataError::MissingFile { .. } => "E0602",
            DataError::Io { .. } => "E0603",
            DataError::BadMagic { .. } => "E0604",
            DataError::WrongLength { .. } => "E0605",
            DataError::CorruptGzip { .. } => "E0606",
            DataError::CountMismatch { .. } => "E0607",
            DataError::LabelOutOfRange { .. } => "E0608",
            DataError::BadShape { .. } => "E0609",
            DataError::RecordLength { .. } => "E0610",
            DataError::ValTooLarge { .. } => "E0611",
            DataError::Empty { .. } => "E0612",
        }
    }

    /// How to fix it, when there is something better to say than the message.
    pub fn help(&self) -> Option<String> {
        let redownload = "the file is damaged or incomplete; download it again";
        Some(match self {
            DataError::NotFound { dataset, .. } => format!(
                "set SPRS_DATA to a directory that holds `{dataset}/` (or the files themselves), \
                 pass `path: \"...\"` to the data statement, or use \
                 `synthetic_digits(train: 6000, test: 1000)`, which needs no files"
            ),
            DataError::MissingFile { dataset, .. } => format!(
                "put the official `{dataset}` files in that directory (gzipped or not), \
                 or point `path:` at the directory that holds them"
            ),
            DataError::Io { .. } => return None,
            DataError::BadMagic { .. } => "check that the path names an IDX file of the right \
                 kind (images and labels not swapped) and that it is not HTML or a partial \
                 download"
                .to_string(),
            DataError::WrongLength { .. } | DataError::CorruptGzip { .. } => redownload.into(),
            DataError::CountMismatch { .. } => {
                "the images and labels files must come from the same split of the same data set".into()
            }
            DataError::LabelOutOfRange { classes, .. } => format!(
                "this data set has {classes} classes; the labels file may belong to another \
                 data set"
            ),
            DataError::BadShape { .. } => "`idx(...)`, `mnist` and `fashion_mnist` take \
                 single-channel 28x28 images"
                .into(),
            DataError::RecordLength { format, .. } => format!(
                "use the binary version of {format} (the `*-binary.tar.gz` download), \
                 not the python or matlab version"
            ),
            DataError::ValTooLarge { train, .. } => {
                format!("choose `val:` below {train}, leaving examples to train on")
            }
            DataError::Empty { .. } => "give the split at least one example".into(),
        })
    }
}

fn searched_list(searched: &[Searched]) -> String {
    let mut out = String::new();
    for (i, s) in searched.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        match &s.dir {
            Some(dir) if dir.to_string_lossy() != s.how => {
                let _ = write!(out, "{sep}{} (`{}`)", s.how, dir.display());
            }
            Some(dir) => {
                let _ = write!(out, "{sep}`{}`", dir.display());
            }
            None => {
                let _ = write!(out, "{sep}{} (SPRS_DATA is not set)", s.how);
            }
        }
    }
    out
}

fn name_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(" or ")
}

fn dims(found: &[u32]) -> String {
    let parts: Vec<String> = found.iter().map(u32::to_string).collect();
    parts.join("x")
}

impl DataError {
    /// The presentation form, pointing at the recipe's `data` statement.
    pub fn to_diagnostic(&self, span: crate::diagnostics::Span) -> crate::diagnostics::Diagnostic {
        let d = crate::diagnostics::Diagnostic::error(self.code(), self.to_string()).at(span, "loading this data");
        match self.help() {
            Some(h) => d.with_help(h),
            None => d,
        }
    }
}
