//! Source text, byte spans and line/column lookup.
//!
//! Spans are small `Copy` byte ranges; lines and columns are computed only when rendering.

use std::fmt;

/// A byte range in one rule file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub lo: u32,
    /// One past the last byte.
    pub hi: u32,
}

impl Span {
    /// A span from byte offsets.
    pub fn new(lo: usize, hi: usize) -> Span {
        Span { lo: u32::try_from(lo).unwrap_or(u32::MAX), hi: u32::try_from(hi).unwrap_or(u32::MAX) }
    }

    /// The byte range, for slicing and for the diagnostic renderer.
    pub fn range(self) -> std::ops::Range<usize> {
        self.lo as usize..self.hi as usize
    }

    /// This span moved right by `offset` bytes (for text parsed out of a string literal).
    pub fn shifted(self, offset: usize) -> Span {
        Span::new(self.lo as usize + offset, self.hi as usize + offset)
    }
}

/// One rule file's name and text, with a line index.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path or name the user knows the file by.
    pub name: String,
    /// The text, CRLF already turned into LF.
    pub text: String,
    line_starts: Vec<usize>,
}

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCol {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

impl fmt::Display for LineCol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl SourceFile {
    /// A source file; CRLF line ends become LF so spans and hashes agree on every machine.
    pub fn new(name: impl Into<String>, text: &str) -> SourceFile {
        let text = text.replace("\r\n", "\n");
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile { name: name.into(), text, line_starts }
    }

    /// The line and column where byte `offset` lies.
    pub fn line_col(&self, offset: u32) -> LineCol {
        let offset = (offset as usize).min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1) - 1;
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let col = self.text.get(start..offset).map_or(0, |s| s.chars().count());
        LineCol { line: u32::try_from(line + 1).unwrap_or(u32::MAX), col: u32::try_from(col + 1).unwrap_or(u32::MAX) }
    }

    /// The text a span covers (empty if the span is out of range).
    pub fn snippet(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let f = SourceFile::new("x", "ab\r\nđc d\n");
        assert_eq!(f.text, "ab\nđc d\n");
        assert_eq!(f.line_col(0), LineCol { line: 1, col: 1 });
        assert_eq!(f.line_col(3), LineCol { line: 2, col: 1 });
        // "đ" is two bytes: byte 6 is the space after "c".
        assert_eq!(f.line_col(6), LineCol { line: 2, col: 3 });
    }
}
