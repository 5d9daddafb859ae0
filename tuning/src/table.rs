//! Plain-text tables: a header row, then rows, left-aligned columns two spaces apart, like
//! Kafka's command-line tools print them. The engine's admin commands use this one too.

/// Columns are separated by this many spaces.
const COLUMN_GAP: usize = 2;

/// What an empty cell prints as, so that every row has the same number of fields.
pub const NONE: &str = "-";

/// Renders `header` and `rows` as aligned lines, each ending in a newline; the last column is not
/// padded. Control characters are escaped: values come from files a user or a fixture controls.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let rows: Vec<Vec<String>> =
        rows.iter().map(|row| row.iter().map(|cell| if cell.is_empty() { NONE.to_string() } else { printable(cell) }).collect()).collect();
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        assert_eq!(row.len(), columns, "every row has one cell per header column");
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            line.push_str(cell);
            if i + 1 < columns {
                line.push_str(&" ".repeat(width - cell.chars().count() + COLUMN_GAP));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `value` with its control characters escaped (`\n`, `\u{1b}`): values come from clients and
/// files, and must not be able to move the cursor or forge table lines on a terminal.
pub fn printable(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_without_trailing_spaces() {
        let rows = vec![vec!["vm.swappiness".to_string(), "60".to_string()], vec!["x".to_string(), String::new()]];
        assert_eq!(render(&["TUNER", "CURRENT"], &rows), "TUNER          CURRENT\nvm.swappiness  60\nx              -\n");
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(printable("a\nb"), "a\\nb");
    }
}
