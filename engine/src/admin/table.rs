//! Plain-text tables for the admin commands, like Kafka's command-line tools print them: the
//! renderer is the tuning crate's (one implementation for every `shardlog` subcommand).

pub use shardlog_tuning::table::{printable, render, NONE};

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
