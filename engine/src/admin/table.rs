//! Plain-text tables: a header row, then rows, left-aligned columns two spaces apart, like
//! Kafka's command-line tools print them.

/// Columns are separated by this many spaces.
const COLUMN_GAP: usize = 2;

/// What an absent value prints as, so that every row has the same number of
/// whitespace-separated fields.
pub const NONE: &str = "-";

/// Renders `header` and `rows` as aligned lines, each ending in a newline. The last column is not
/// padded, so no line has trailing spaces. Values are made printable (see [`printable`]) and an
/// empty value prints as [`NONE`].
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
                let pad = width - cell.chars().count() + COLUMN_GAP;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `value` with its control characters escaped (`\n`, `\u{1b}`). Client ids, hosts and group ids
/// come from clients, and must not be able to move the cursor or forge table lines on a terminal.
pub fn printable(value: &str) -> String {
    if !value.chars().any(char::is_control) {
        return value.to_string();
    }
    value.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// An optional value as a cell: the value, or [`NONE`].
pub fn cell<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| NONE.to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_align_and_lines_have_no_trailing_spaces() {
        let out = render(&["GROUP", "STATE", "PROTOCOL-TYPE"], &[row(&["a-long-group-name", "Stable", "consumer"]), row(&["b", "Empty", ""])]);
        assert_eq!(
            out,
            "GROUP              STATE   PROTOCOL-TYPE\n\
             a-long-group-name  Stable  consumer\n\
             b                  Empty   -\n"
        );
    }

    #[test]
    fn header_only_when_there_are_no_rows() {
        assert_eq!(render(&["A", "BB"], &[]), "A  BB\n");
    }

    #[test]
    fn a_short_last_cell_leaves_no_trailing_space() {
        assert_eq!(render(&["A", "B"], &[row(&["x", "-"]), row(&["yyyy", "-"])]), "A     B\nx     -\nyyyy  -\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("ok name"), "ok name");
        assert_eq!(printable("evil\nGROUP\u{1b}[2J"), "evil\\nGROUP\\u{1b}[2J");
        let out = render(&["A", "B"], &[row(&["x\ny", "z"])]);
        assert_eq!(out.lines().count(), 2);
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let out = render(&["A", "B"], &[row(&["é", "1"]), row(&["ab", "2"])]);
        assert_eq!(out, "A   B\né   1\nab  2\n");
    }

    #[test]
    fn cells_of_optional_values() {
        assert_eq!(cell(Some(42)), "42");
        assert_eq!(cell(None::<i64>), "-");
    }
}
