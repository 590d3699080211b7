//! Output: aligned tables for people, the API's JSON for scripts, and
//! status colours only when stdout is a terminal.

use std::io::IsTerminal;

use parasol_api::Status;

use super::client::Answer;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// The API's JSON, exactly as the server sent it.
    Json,
}

/// Prints an answer's body unchanged (with a final newline).
pub fn print_raw(answer: &Answer) {
    let text = answer.text();
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
}

/// Whether colours go to stdout. `NO_COLOR` turns them off everywhere.
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A cell: its text, and the ANSI colour to paint it in on a terminal.
pub struct Cell {
    pub text: String,
    pub color: Option<&'static str>,
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Self {
        Cell {
            text: text.into(),
            color: None,
        }
    }
}

/// ANSI SGR codes used for statuses.
pub mod ansi {
    pub const GREEN: &str = "32";
    pub const YELLOW: &str = "33";
    pub const RED: &str = "31";
    pub const DIM: &str = "2";
    pub const BOLD: &str = "1";
}

/// The colour of a status: green when usable, yellow on the way, red when
/// failed, dim when going away.
pub fn status_color(s: Status) -> &'static str {
    match s {
        Status::Active => ansi::GREEN,
        Status::Creating | Status::PendingProvider | Status::Pending => ansi::YELLOW,
        Status::Error => ansi::RED,
        Status::Deleting | Status::Deleted => ansi::DIM,
    }
}

/// A status cell.
pub fn status_cell(s: Status) -> Cell {
    Cell {
        text: s.as_str().to_string(),
        color: Some(status_color(s)),
    }
}

/// Wraps `text` in an SGR colour when `on`.
pub fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A table with a header row; columns are padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: vec![],
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// Whether no rows were added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text. Widths count characters of the plain text, so
    /// colour codes never break alignment; the last column is not padded.
    pub fn render(&self, color: bool) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.text.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<(String, Option<&str>)>, out: &mut String| {
            for (i, (text, code)) in cells.into_iter().enumerate() {
                let pad = widths[i] - text.chars().count();
                match code {
                    Some(c) => out.push_str(&paint(&text, c, color)),
                    None => out.push_str(&text),
                }
                if i + 1 < n {
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push('\n');
        };
        line(
            self.header
                .iter()
                .map(|h| (h.to_string(), color.then_some(ansi::BOLD)))
                .collect(),
            &mut out,
        );
        for r in &self.rows {
            line(
                r.iter().map(|c| (c.text.clone(), c.color)).collect(),
                &mut out,
            );
        }
        out
    }

    /// Prints the table, or `empty` when it has no rows.
    pub fn print(&self, empty: &str) {
        if self.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", self.render(color_stdout()));
        }
    }
}

/// A duration in seconds as `1h02m`, `3m05s` or `42s`.
pub fn human_secs(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// Cents per hour as `$1.23`.
pub fn price(cents: i64) -> String {
    format!("${}", parasol_api::dollars(cents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_plain_width_even_when_coloured() {
        let mut t = Table::new(&["ID", "STATUS", "NAME"]);
        t.row(vec![
            "a".into(),
            status_cell(Status::Active),
            "first".into(),
        ]);
        t.row(vec![
            "bbbb".into(),
            status_cell(Status::PendingProvider),
            "second".into(),
        ]);
        let plain = t.render(false);
        assert_eq!(
            plain,
            "ID    STATUS            NAME\n\
             a     active            first\n\
             bbbb  pending_provider  second\n"
        );
        let coloured = t.render(true);
        assert!(coloured.contains("\x1b[32mactive\x1b[0m            first"));
        assert!(coloured.contains("\x1b[33mpending_provider\x1b[0m  second"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_secs(5), "5s");
        assert_eq!(human_secs(185), "3m05s");
        assert_eq!(human_secs(3720), "1h02m");
        assert_eq!(price(250), "$2.50");
    }
}
