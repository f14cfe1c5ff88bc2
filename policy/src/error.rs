//! Policy errors that point at the offending spot, rendered as
//! `origin:line:column: field: what was wrong and what was expected`.
//! Byte offsets from the TOML parser become 1-based line and column here.

/// Why a policy file was rejected, and where.
///
/// `field()` is the dotted key path (`hours.from`, `sites.allow`), `"syntax"`
/// for TOML syntax errors, or `""` for whole-file problems (unreadable file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.origin, *.location, .field, .message))]
pub struct PolicyError {
    origin: String,
    location: Option<(usize, usize)>,
    field: String,
    message: String,
}

fn render(origin: &str, location: Option<(usize, usize)>, field: &str, message: &str) -> String {
    let mut out = String::from(origin);
    if let Some((line, column)) = location {
        out.push_str(&format!(":{line}:{column}"));
    }
    out.push_str(": ");
    if !field.is_empty() {
        out.push_str(field);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}

impl PolicyError {
    /// An error located at byte `offset` of `src`.
    pub(crate) fn at(
        origin: &str,
        src: &str,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PolicyError {
            origin: origin.to_string(),
            location: Some(line_column(src, offset)),
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the whole file, with no location (e.g. it cannot be read).
    pub(crate) fn file(origin: &str, message: impl Into<String>) -> Self {
        PolicyError {
            origin: origin.to_string(),
            location: None,
            field: String::new(),
            message: message.into(),
        }
    }

    /// The file (or other origin) the policy came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// 1-based line of the offending key or value, if there is one.
    pub fn line(&self) -> Option<usize> {
        self.location.map(|(l, _)| l)
    }

    /// 1-based column (in characters) of the offending key or value, if there is one.
    pub fn column(&self) -> Option<usize> {
        self.location.map(|(_, c)| c)
    }

    /// Dotted path of the offending key (`hours.from`), `"syntax"`, or `""`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What was wrong and what was expected, without origin, location or field.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// 1-based (line, column) of byte `offset` in `src`; columns count characters.
pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1; // terminates: offset 0 is always a boundary
    }
    let before = &src[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let src = "a = 1\nbü = 2\r\nc = 3";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 4), (1, 5));
        assert_eq!(line_column(src, 6), (2, 1));
        // 'ü' is two bytes but one column.
        assert_eq!(line_column(src, 10), (2, 4));
        assert_eq!(line_column(src, src.len()), (3, 6));
        // Offsets inside a multi-byte character or past the end do not panic.
        assert_eq!(line_column(src, 8), (2, 2));
        assert_eq!(line_column(src, 999), (3, 6));
    }

    #[test]
    fn display() {
        let e = PolicyError::at("x.toml", "a\nfrom = 1", 9, "hours.from", "bad");
        assert_eq!(e.to_string(), "x.toml:2:8: hours.from: bad");
        assert_eq!(
            (e.line(), e.column(), e.field()),
            (Some(2), Some(8), "hours.from")
        );
        let e = PolicyError::file("x.toml", "cannot read policy file: gone");
        assert_eq!(e.to_string(), "x.toml: cannot read policy file: gone");
        assert_eq!((e.line(), e.column(), e.field()), (None, None, ""));
    }
}
