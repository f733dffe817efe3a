//! YAML text exactly as PyYAML's `yaml.safe_dump` writes it, so `show-config`, `list -f yaml` and the
//! `Tags` column match patronictl byte for byte (`ctl.py format_config_for_editing`:
//! `safe_dump(data, default_flow_style=…, allow_unicode=True, width=200)`).
//!
//! A port of the parts of PyYAML's `SafeRepresenter` (sorted mapping keys, scalar spelling), `Resolver`
//! (which plain scalars would read back as something other than a string) and `Emitter` (indentation,
//! scalar style choice, line folding) that JSON-shaped data can reach. Anchors, tags and block scalars
//! never occur for such data and are left out.

use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

/// Options of one dump.
#[derive(Clone, Copy, Debug)]
pub struct DumpOptions {
    /// `default_flow_style`: every collection in flow style (`{a: 1}`) instead of block style.
    pub flow: bool,
    /// `width`: preferred line width before folding.
    pub width: usize,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions { flow: false, width: 200 }
    }
}

/// `yaml.safe_dump(value, default_flow_style=opts.flow, allow_unicode=True, width=opts.width)`.
pub fn dump(value: &Value, opts: DumpOptions) -> String {
    let node = represent(value, opts.flow);
    let mut e = Emitter::new(opts.width);
    e.document(&node);
    e.out
}

enum Node {
    /// `plain_ok`: the text would resolve back to its own type when written plain
    /// (PyYAML's `implicit[0]`).
    Scalar {
        text: String,
        plain_ok: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
    Map {
        pairs: Vec<(Node, Node)>,
        flow: bool,
    },
}

fn represent(v: &Value, flow: bool) -> Node {
    match v {
        Value::Null => Node::Scalar { text: "null".into(), plain_ok: true },
        Value::Bool(b) => Node::Scalar { text: if *b { "true" } else { "false" }.into(), plain_ok: true },
        Value::Number(n) => {
            let text = if n.is_f64() { yaml_float(n.as_f64().unwrap_or(0.0)) } else { n.to_string() };
            Node::Scalar { text, plain_ok: true }
        }
        Value::String(s) => Node::Scalar { text: s.clone(), plain_ok: resolves_to_str(s) },
        Value::Array(a) => Node::Seq { items: a.iter().map(|x| represent(x, flow)).collect(), flow },
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let pairs = keys
                .into_iter()
                .map(|k| {
                    (Node::Scalar { text: k.clone(), plain_ok: resolves_to_str(k) }, represent(&m[k], flow))
                })
                .collect();
            Node::Map { pairs, flow }
        }
    }
}

/// `SafeRepresenter.represent_float`: `repr(f).lower()`, with `.0` added before an exponent.
fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let r = super::pyjson::float_repr(f).to_lowercase();
    if !r.contains('.') && r.contains('e') { r.replacen('e', ".0e", 1) } else { r }
}

static IMPLICIT: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // bool
        r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
        // float
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        // int
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
        // merge
        r"^(?:<<)$",
        // null
        r"^(?:~|null|Null|NULL|)$",
        // timestamp
        r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
        // value
        r"^(?:=)$",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("static resolver pattern compiles"))
    .collect()
});

/// A plain scalar with this text reads back as a string (no implicit resolver claims it). Python's
/// `$` also matches before one trailing newline, hence the second candidate.
fn resolves_to_str(s: &str) -> bool {
    let candidates = [Some(s), s.strip_suffix('\n')];
    !candidates.iter().flatten().any(|c| IMPLICIT.iter().any(|re| re.is_match(c)))
}

#[derive(Default)]
struct Analysis {
    empty: bool,
    multiline: bool,
    allow_flow_plain: bool,
    allow_block_plain: bool,
    allow_single_quoted: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_ws_or_end(c: char) -> bool {
    matches!(c, '\0' | ' ' | '\t' | '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `Emitter.analyze_scalar` with `allow_unicode=True`.
fn analyze(text: &str) -> Analysis {
    let s: Vec<char> = text.chars().collect();
    if s.is_empty() {
        return Analysis {
            empty: true,
            multiline: false,
            allow_flow_plain: false,
            allow_block_plain: true,
            allow_single_quoted: true,
        };
    }
    let mut block_indicators = false;
    let mut flow_indicators = false;
    let mut line_breaks = false;
    let mut special_characters = false;
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    if text.starts_with("---") || text.starts_with("...") {
        block_indicators = true;
        flow_indicators = true;
    }
    let mut preceded_by_whitespace = true;
    let mut followed_by_whitespace = s.len() == 1 || is_ws_or_end(s[1]);
    let (mut previous_space, mut previous_break) = (false, false);
    let n = s.len();
    for (index, &ch) in s.iter().enumerate() {
        if index == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(ch) {
                flow_indicators = true;
                block_indicators = true;
            }
            if ch == '?' || ch == ':' {
                flow_indicators = true;
                if followed_by_whitespace {
                    block_indicators = true;
                }
            }
            if ch == '-' && followed_by_whitespace {
                flow_indicators = true;
                block_indicators = true;
            }
        } else {
            if ",?[]{}".contains(ch) {
                flow_indicators = true;
            }
            if ch == ':' {
                flow_indicators = true;
                if followed_by_whitespace {
                    block_indicators = true;
                }
            }
            if ch == '#' && preceded_by_whitespace {
                flow_indicators = true;
                block_indicators = true;
            }
        }
        if is_break(ch) {
            line_breaks = true;
        }
        if !(ch == '\n' || ('\x20'..='\x7E').contains(&ch)) {
            let unicode = (ch == '\u{85}'
                || ('\u{A0}'..='\u{D7FF}').contains(&ch)
                || ('\u{E000}'..='\u{FFFD}').contains(&ch)
                || ('\u{10000}'..'\u{10FFFF}').contains(&ch))
                && ch != '\u{FEFF}';
            if !unicode {
                special_characters = true;
            }
        }
        if ch == ' ' {
            if index == 0 {
                leading_space = true;
            }
            if index == n - 1 {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(ch) {
            if index == 0 {
                leading_break = true;
            }
            if index == n - 1 {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_ws_or_end(ch);
        followed_by_whitespace = index + 2 >= n || is_ws_or_end(s[index + 2]);
    }
    let mut a = Analysis {
        empty: false,
        multiline: line_breaks,
        allow_flow_plain: true,
        allow_block_plain: true,
        allow_single_quoted: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.allow_flow_plain = false;
        a.allow_block_plain = false;
    }
    if break_space {
        a.allow_flow_plain = false;
        a.allow_block_plain = false;
        a.allow_single_quoted = false;
    }
    if space_break || special_characters {
        a.allow_flow_plain = false;
        a.allow_block_plain = false;
        a.allow_single_quoted = false;
    }
    if line_breaks {
        a.allow_flow_plain = false;
        a.allow_block_plain = false;
    }
    if flow_indicators {
        a.allow_flow_plain = false;
    }
    if block_indicators {
        a.allow_block_plain = false;
    }
    a
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

#[derive(Clone, Copy, Default)]
struct Ctx {
    root: bool,
    mapping: bool,
    simple_key: bool,
}

struct Emitter {
    out: String,
    indents: Vec<Option<usize>>,
    indent: Option<usize>,
    flow_level: usize,
    ctx: Ctx,
    column: usize,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    best_indent: usize,
    best_width: usize,
}

impl Emitter {
    fn new(width: usize) -> Emitter {
        let best_indent = 2;
        Emitter {
            out: String::new(),
            indents: Vec::new(),
            indent: None,
            flow_level: 0,
            ctx: Ctx::default(),
            column: 0,
            whitespace: true,
            indention: true,
            open_ended: false,
            best_indent,
            best_width: if width > best_indent * 2 { width } else { 80 },
        }
    }

    fn document(&mut self, root: &Node) {
        self.node(root, Ctx { root: true, ..Ctx::default() });
        // expect_document_end
        self.write_indent();
        // stream end
        if self.open_ended {
            self.write_indicator("...", true, false, false);
            self.write_indent();
        }
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        match self.indent {
            None => self.indent = Some(if flow { self.best_indent } else { 0 }),
            Some(i) if !indentless => self.indent = Some(i + self.best_indent),
            Some(_) => {}
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().flatten();
    }

    fn node(&mut self, node: &Node, ctx: Ctx) {
        self.ctx = ctx;
        match node {
            Node::Scalar { text, plain_ok } => {
                let a = analyze(text);
                let style = self.choose_style(&a, *plain_ok);
                self.increase_indent(true, false);
                let split = !self.ctx.simple_key;
                match style {
                    Style::Double => self.write_double_quoted(text, split),
                    Style::Single => self.write_single_quoted(text, split),
                    Style::Plain => self.write_plain(text, split),
                }
                self.pop_indent();
            }
            Node::Seq { items, flow } => {
                if self.flow_level > 0 || *flow || items.is_empty() {
                    self.flow_sequence(items);
                } else {
                    self.block_sequence(items);
                }
            }
            Node::Map { pairs, flow } => {
                if self.flow_level > 0 || *flow || pairs.is_empty() {
                    self.flow_mapping(pairs);
                } else {
                    self.block_mapping(pairs);
                }
            }
        }
    }

    fn choose_style(&self, a: &Analysis, plain_ok: bool) -> Style {
        if plain_ok
            && !(self.ctx.simple_key && (a.empty || a.multiline))
            && ((self.flow_level > 0 && a.allow_flow_plain) || (self.flow_level == 0 && a.allow_block_plain))
        {
            return Style::Plain;
        }
        if a.allow_single_quoted && !(self.ctx.simple_key && a.multiline) {
            return Style::Single;
        }
        Style::Double
    }

    fn is_simple_key(key: &Node) -> bool {
        match key {
            Node::Scalar { text, .. } => {
                let a = analyze(text);
                text.chars().count() < 128 && !a.empty && !a.multiline
            }
            Node::Seq { items, .. } => items.is_empty(),
            Node::Map { pairs, .. } => pairs.is_empty(),
        }
    }

    fn flow_sequence(&mut self, items: &[Node]) {
        self.write_indicator("[", true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            if self.column > self.best_width {
                self.write_indent();
            }
            self.node(item, Ctx::default());
        }
        self.pop_indent();
        self.flow_level -= 1;
        self.write_indicator("]", false, false, false);
    }

    fn flow_mapping(&mut self, pairs: &[(Node, Node)]) {
        self.write_indicator("{", true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            if self.column > self.best_width {
                self.write_indent();
            }
            if Self::is_simple_key(k) {
                self.node(k, Ctx { mapping: true, simple_key: true, ..Ctx::default() });
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, false);
                self.node(k, Ctx { mapping: true, ..Ctx::default() });
                if self.column > self.best_width {
                    self.write_indent();
                }
                self.write_indicator(":", true, false, false);
            }
            self.node(v, Ctx { mapping: true, ..Ctx::default() });
        }
        self.pop_indent();
        self.flow_level -= 1;
        self.write_indicator("}", false, false, false);
    }

    fn block_sequence(&mut self, items: &[Node]) {
        let indentless = self.ctx.mapping && !self.indention;
        self.increase_indent(false, indentless);
        for item in items {
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.node(item, Ctx::default());
        }
        self.pop_indent();
    }

    fn block_mapping(&mut self, pairs: &[(Node, Node)]) {
        self.increase_indent(false, false);
        for (k, v) in pairs {
            self.write_indent();
            if Self::is_simple_key(k) {
                self.node(k, Ctx { mapping: true, simple_key: true, ..Ctx::default() });
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, true);
                self.node(k, Ctx { mapping: true, ..Ctx::default() });
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            self.node(v, Ctx { mapping: true, ..Ctx::default() });
        }
        self.pop_indent();
    }

    fn write(&mut self, data: &str) {
        self.column += data.chars().count();
        self.out.push_str(data);
    }

    fn write_indicator(&mut self, indicator: &str, need_whitespace: bool, whitespace: bool, indention: bool) {
        if !self.whitespace && need_whitespace {
            self.write(" ");
        }
        self.write(indicator);
        self.whitespace = whitespace;
        self.indention = self.indention && indention;
        self.open_ended = false;
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.write_line_break(None);
        }
        if self.column < indent {
            self.whitespace = true;
            let pad = " ".repeat(indent - self.column);
            self.write(&pad);
        }
    }

    fn write_line_break(&mut self, data: Option<char>) {
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
        self.out.push(data.unwrap_or('\n'));
    }

    fn write_breaks(&mut self, text: &[char], start: usize, end: usize) {
        if text[start] == '\n' {
            self.write_line_break(None);
        }
        for &br in &text[start..end] {
            self.write_line_break(Some(br));
        }
    }

    fn write_plain(&mut self, text: &str, split: bool) {
        if self.ctx.root {
            self.open_ended = true;
        }
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write(" ");
        }
        self.whitespace = false;
        self.indention = false;
        let t: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        let (mut start, mut end) = (0usize, 0usize);
        while end <= t.len() {
            let ch = t.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > self.best_width && split {
                        self.write_indent();
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        let data: String = t[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if breaks {
                if !ch.is_some_and(is_break) {
                    self.write_breaks(&t, start, end);
                    self.write_indent();
                    self.whitespace = false;
                    self.indention = false;
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ' || is_break(c)) {
                let data: String = t[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
            end += 1;
        }
    }

    fn write_single_quoted(&mut self, text: &str, split: bool) {
        self.write_indicator("'", true, false, false);
        let t: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        let (mut start, mut end) = (0usize, 0usize);
        while end <= t.len() {
            let ch = t.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end
                        && self.column > self.best_width
                        && split
                        && start != 0
                        && end != t.len()
                    {
                        self.write_indent();
                    } else {
                        let data: String = t[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if breaks {
                if !ch.is_some_and(is_break) {
                    self.write_breaks(&t, start, end);
                    self.write_indent();
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ' || is_break(c) || c == '\'') && start < end {
                let data: String = t[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if ch == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
            end += 1;
        }
        self.write_indicator("'", false, false, false);
    }

    fn write_double_quoted(&mut self, text: &str, split: bool) {
        self.write_indicator("\"", true, false, false);
        let t: Vec<char> = text.chars().collect();
        let (mut start, mut end) = (0usize, 0usize);
        while end <= t.len() {
            let ch = t.get(end).copied();
            let needs_escape = match ch {
                None => true,
                Some(c) => {
                    "\"\\\u{85}\u{2028}\u{2029}\u{FEFF}".contains(c)
                        || !(('\x20'..='\x7E').contains(&c)
                            || ('\u{A0}'..='\u{D7FF}').contains(&c)
                            || ('\u{E000}'..='\u{FFFD}').contains(&c))
                }
            };
            if needs_escape {
                if start < end {
                    let data: String = t[start..end].iter().collect();
                    self.write(&data);
                    start = end;
                }
                if let Some(c) = ch {
                    let data = match c {
                        '\0' => "\\0".to_string(),
                        '\x07' => "\\a".into(),
                        '\x08' => "\\b".into(),
                        '\x09' => "\\t".into(),
                        '\x0A' => "\\n".into(),
                        '\x0B' => "\\v".into(),
                        '\x0C' => "\\f".into(),
                        '\x0D' => "\\r".into(),
                        '\x1B' => "\\e".into(),
                        '"' => "\\\"".into(),
                        '\\' => "\\\\".into(),
                        '\u{85}' => "\\N".into(),
                        '\u{A0}' => "\\_".into(),
                        '\u{2028}' => "\\L".into(),
                        '\u{2029}' => "\\P".into(),
                        c if (c as u32) <= 0xFF => format!("\\x{:02X}", c as u32),
                        c if (c as u32) <= 0xFFFF => format!("\\u{:04X}", c as u32),
                        c => format!("\\U{:08X}", c as u32),
                    };
                    self.write(&data);
                    start = end + 1;
                }
            }
            if 0 < end
                && end + 1 < t.len()
                && (ch == Some(' ') || start >= end)
                && self.column as isize + end as isize - start as isize > self.best_width as isize
                && split
            {
                let mut data: String = t[start.min(end)..end].iter().collect();
                data.push('\\');
                if start < end {
                    start = end;
                }
                self.write(&data);
                self.write_indent();
                self.whitespace = false;
                self.indention = false;
                if t.get(start) == Some(&' ') {
                    self.write("\\");
                }
            }
            end += 1;
        }
        self.write_indicator("\"", false, false, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn block(v: Value) -> String {
        dump(&v, DumpOptions::default())
    }

    #[test]
    fn strings_that_would_read_back_as_other_types_are_quoted() {
        assert_eq!(
            block(json!({"a": "on", "b": "012", "c": "", "d": "2026-01-02", "e": "1GB", "f": 5})),
            "a: 'on'\nb: '012'\nc: ''\nd: '2026-01-02'\ne: 1GB\nf: 5\n"
        );
    }

    #[test]
    fn sequences_inside_mappings_are_not_indented_and_keys_are_sorted() {
        assert_eq!(block(json!({"z": [1, {"b": 2, "a": 1}], "e": {}})), "e: {}\nz:\n- 1\n- a: 1\n  b: 2\n");
    }

    #[test]
    fn flow_style_and_floats() {
        let v = json!({"nofailover": true, "w": 0.5, "x": 1e16, "s": "a b"});
        assert_eq!(
            dump(&v, DumpOptions { flow: true, width: 200 }),
            "{nofailover: true, s: a b, w: 0.5, x: 1.0e+16}\n"
        );
    }
}
