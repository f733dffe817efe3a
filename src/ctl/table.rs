//! The ASCII table patronictl draws (`ctl.py PatronictlPrettyTable` over `prettytable`): `+---+` rules,
//! `| cell |` rows with one space of padding, per-column alignment (headers aligned like their
//! column), multi-line cells, and the cluster title written over the start of the top rule.

use unicode_width::UnicodeWidthStr;

/// Column alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Left (patronictl's default).
    Left,
    /// Right (`TL`, LSN and lag columns).
    Right,
}

/// Display width of one line, as `wcwidth.width` measures it.
fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Python's `str.expandtabs()` (tab stops every 8 columns, reset at each newline).
fn expand_tabs(s: &str) -> String {
    if !s.contains('\t') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut col = 0;
    for c in s.chars() {
        match c {
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            '\n' | '\r' => {
                out.push(c);
                col = 0;
            }
            c => {
                out.push(c);
                col += 1;
            }
        }
    }
    out
}

fn justify(text: &str, w: usize, align: Align) -> String {
    let pad = " ".repeat(w.saturating_sub(width(text)));
    match align {
        Align::Left => format!("{text}{pad}"),
        Align::Right => format!("{pad}{text}"),
    }
}

/// Render a table. `title` (may be empty) replaces the start of the top rule. Rules appear between
/// all rows when any cell spans several lines, otherwise only around the header and at the bottom.
/// The result has no trailing newline.
pub fn render(title: &str, columns: &[String], aligns: &[Align], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| expand_tabs(c)).collect()).collect();
    let all_rules = rows.iter().any(|r| r.iter().any(|c| c.contains('\n')));
    let mut widths: Vec<usize> =
        columns.iter().map(|c| c.split('\n').map(width).max().unwrap_or(0)).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.split('\n').map(width).max().unwrap_or(0));
            }
        }
    }
    let rule: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s
    };
    let align = |i: usize| aligns.get(i).copied().unwrap_or(Align::Left);
    let mut lines: Vec<String> = Vec::new();

    // Top rule with the title over it (`PatronictlPrettyTable.__build_header`).
    let rule_chars: Vec<char> = rule.chars().collect();
    let title: String = title.chars().take(rule_chars.len().saturating_sub(2)).collect();
    let tlen = title.chars().count();
    let mut top = String::new();
    top.push(rule_chars[0]);
    top.push_str(&title);
    top.extend(&rule_chars[(1 + tlen).min(rule_chars.len())..]);
    lines.push(top);

    let mut header = String::from("|");
    for (i, c) in columns.iter().enumerate() {
        header.push(' ');
        header.push_str(&justify(c, widths[i], align(i)));
        header.push_str(" |");
    }
    lines.push(header);
    lines.push(rule.clone());

    for (ri, r) in rows.iter().enumerate() {
        let cells: Vec<Vec<&str>> = r.iter().map(|c| c.split('\n').collect()).collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(1);
        for y in 0..height {
            let mut line = String::from("|");
            for (i, cell) in cells.iter().enumerate() {
                let text = cell.get(y).copied().unwrap_or("");
                line.push(' ');
                line.push_str(&justify(text, widths.get(i).copied().unwrap_or(0), align(i)));
                line.push_str(" |");
            }
            lines.push(line);
        }
        if all_rules || ri + 1 == rows.len() {
            lines.push(rule.clone());
        }
    }
    if rows.is_empty() {
        lines.push(rule);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_overwrites_the_top_rule_and_is_cut_to_fit() {
        let t = render(
            " Cluster: x (1) ",
            &["Member".into(), "TL".into()],
            &[Align::Left, Align::Right],
            &[vec!["pg0".into(), "1".into()]],
        );
        assert_eq!(t, "+ Cluster: x (+\n| Member | TL |\n+--------+----+\n| pg0    |  1 |\n+--------+----+");
    }
}
