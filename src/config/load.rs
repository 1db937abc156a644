//! Reading the config file: `$VAR` expansion, strict bounded YAML parsing, and errors located by field path and line.

use std::io::Read;
use std::path::Path;

use serde_path_to_error::Segment;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Budget, DuplicateKeyPolicy, MessageFormatter, Options, UserMessageFormatter};

use super::model::Config;

/// Largest config text accepted, before and after expansion: a config is a few KiB, so
/// anything near this is a mistake or an attack, and refusing it early bounds memory.
const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// Deepest nesting of mappings and sequences: the model is about 10 levels deep (plus the
/// free-form `mcp` values), and the cap keeps recursive deserialization far from the stack limit.
const MAX_DEPTH: usize = 64;

/// Most YAML nodes: generous for any real config, small enough to bound parse time and memory.
const MAX_NODES: usize = 250_000;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// File could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file as given.
        path: String,
        /// The OS error (or `FileTooLarge` / `InvalidData` for oversized or non-UTF-8 files).
        source: std::io::Error,
    },
    /// `$VAR`/`${VAR}` not set in the environment.
    #[error("{source_name}:{line}: environment variable `{var}` is not set")]
    MissingEnv {
        /// File name (or other label) of the text.
        source_name: String,
        /// 1-based line of the reference.
        line: usize,
        /// The variable's name.
        var: String,
    },
    /// YAML syntax or type error, with the field path (e.g.
    /// `binds[0].listeners[0].routes[1].policies.timeout.requestTimeout`) and the 1-based line
    /// (and column when known).
    #[error("{}", located(source_name, path, *line, *column, message))]
    Parse {
        /// File name (or other label) of the text.
        source_name: String,
        /// Field path of the failing value; empty for whole-document errors (syntax, budget).
        path: String,
        /// 1-based line in the file as written (before `$VAR` expansion).
        line: Option<usize>,
        /// 1-based column (in characters); absent when unknown or when `$VAR` expansion
        /// changed that line, since the parser's column then no longer matches the file.
        column: Option<usize>,
        /// What is wrong, without the location.
        message: String,
    },
    /// Semantically invalid (produced later by compile): names the field path.
    #[error("{source_name}: {path}: {message}")]
    Invalid {
        /// File name (or other label) of the text.
        source_name: String,
        /// Field path of the offending value.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// `file:line:col: path: message`, leaving out the parts that are unknown.
fn located(source_name: &str, path: &str, line: Option<usize>, column: Option<usize>, message: &str) -> String {
    let mut s = source_name.to_string();
    if let Some(line) = line {
        s.push_str(&format!(":{line}"));
        if let Some(column) = column {
            s.push_str(&format!(":{column}"));
        }
    }
    s.push_str(": ");
    if !path.is_empty() {
        s.push_str(path);
        s.push_str(": ");
    }
    s.push_str(message);
    s
}

/// Reads `path` (at most 16 MiB), expands `$VAR`s and parses it; errors are labelled with the path.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let io = |source| ConfigError::Io { path: name.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    // Read one byte past the limit so an oversized file is detected without reading all of it.
    file.take(MAX_CONFIG_BYTES as u64 + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() > MAX_CONFIG_BYTES {
        return Err(io(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "config file is larger than 16 MiB")));
    }
    parse_str(&text, &name)
}

/// Expands `$VAR`s in `text`, then parses it as a [`Config`]; `source_name` labels errors.
/// An empty document (or `{}`) is the default config.
pub fn parse_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
    parse_with(text, source_name, &env_lookup)
}

/// Looks a variable up in the process environment; a non-UTF-8 value counts as unset, as the
/// config text must stay UTF-8.
fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable lookup: the environment, or a fixed table in tests (which must not mutate the
/// process environment while other tests read it).
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// [`parse_str`] with the variable lookup as a parameter.
fn parse_with(text: &str, source_name: &str, lookup: Lookup) -> Result<Config, ConfigError> {
    let whole = |message: String| ConfigError::Parse {
        source_name: source_name.to_string(),
        path: String::new(),
        line: None,
        column: None,
        message,
    };
    if text.len() > MAX_CONFIG_BYTES {
        return Err(whole("config is larger than 16 MiB".into()));
    }
    // A byte-order mark is not content; dropped here, it cannot hide a first-line comment.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let expanded = expand(text, source_name, lookup)?;
    if expanded.text.len() > MAX_CONFIG_BYTES {
        return Err(whole("config is larger than 16 MiB after environment expansion".into()));
    }
    if is_blank_document(&expanded.text) {
        // The YAML parser reads an empty stream as "no value", which a struct rejects; an empty
        // file is a legitimate "all defaults" config, as in agentgateway.
        return Ok(Config::default());
    }

    // serde_path_to_error wraps saphyr's streaming deserializer to record the field path; the
    // path is passed out through this slot because the closure must return saphyr's error type.
    let mut failed_at: Option<Vec<Segment>> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(&expanded.text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            failed_at = Some(e.path().iter().cloned().collect());
            e.into_inner()
        })
    });
    result.map_err(|err| {
        let original = original_error(&err);
        let (line, column) = match original.location().or_else(|| err.location()) {
            Some(loc) if loc.line() > 0 => expanded.origin(loc.line(), loc.column()),
            _ => (None, None),
        };
        ConfigError::Parse {
            source_name: source_name.to_string(),
            path: field_path(failed_at.unwrap_or_default(), original),
            line,
            column,
            message: sanitize(&message(original, &expanded.text)),
        }
    })
}

/// The path of the value that failed. A key-level error (unknown field, duplicate key) names
/// the mapping that holds the key, like `binds[0].listeners[0]`; the key is in the message.
fn field_path(mut segments: Vec<Segment>, err: &serde_saphyr::Error) -> String {
    // A key that failed before it was read is recorded as `?`.
    while matches!(segments.last(), Some(Segment::Unknown)) {
        segments.pop();
    }
    if let serde_saphyr::Error::SerdeUnknownField { field, .. } = err {
        if matches!(segments.last(), Some(Segment::Map { key }) if key == field) {
            segments.pop();
        }
    }
    let mut path = String::new();
    for segment in &segments {
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Unknown => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push('?');
            }
        }
    }
    path
}

/// The error's message for a config author, without location (we add our own).
fn message(err: &serde_saphyr::Error, text: &str) -> String {
    match err {
        // saphyr says only `invalid u16`; quote the offending scalar so the author sees it.
        serde_saphyr::Error::InvalidScalar { ty, location } => {
            let span = location.span();
            let value = span
                .byte_offset()
                .zip(span.byte_len())
                .and_then(|(off, len)| {
                    let start = usize::try_from(off).ok()?;
                    let end = start.checked_add(usize::try_from(len).ok()?)?;
                    text.get(start..end)
                })
                .filter(|v| !v.is_empty() && v.len() <= 80 && !v.contains('\n'));
            match value {
                Some(v) => format!("invalid {ty} `{v}`"),
                None => format!("invalid {ty}"),
            }
        }
        serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => {
            format!("duplicate key `{key}`")
        }
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => "duplicate key".into(),
        serde_saphyr::Error::Budget { breach: BudgetBreach::Depth { .. }, .. } => {
            format!("nested deeper than {MAX_DEPTH} levels")
        }
        serde_saphyr::Error::Budget { breach, .. } => {
            format!("config too large or too complex: limit exceeded: {breach:?}")
        }
        _ => UserMessageFormatter.format_message(err).into_owned(),
    }
}

/// The JSON Schema of the config file (for editors and validation), titled `ringgate configuration`.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Config);
    schema.schema.metadata().title = Some("ringgate configuration".into());
    // A schema is plain strings, maps and numbers, so converting it cannot fail; Null is only
    // the type-level fallback.
    let mut value = serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null);
    for (definition, alias, field) in SCHEMA_ALIASES {
        let properties = format!("/definitions/{definition}/properties");
        let Some(serde_json::Value::Object(props)) = value.pointer_mut(&properties) else {
            continue;
        };
        if let Some(mut prop) = props.get(*field).cloned() {
            if let Some(obj) = prop.as_object_mut() {
                obj.insert("description".into(), format!("Alias of `{field}` (agentgateway's name).").into());
            }
            props.insert((*alias).into(), prop);
        }
    }
    value
}

/// serde aliases in the model, as (schema definition, alias, field): schemars 0.8 leaves aliases
/// out, and with `additionalProperties: false` an editor would then flag agentgateway configs.
const SCHEMA_ALIASES: &[(&str, &str, &str)] = &[
    ("ProcessConfig", "workerThreads", "workers"),
    ("ProcessConfig", "connectionTerminationDeadline", "drainTimeout"),
    ("HttpLimits", "maxBufferSize", "maxBodyBytes"),
    ("HttpLimits", "http1IdleTimeout", "idleTimeout"),
];

/// Expands environment variables the way agentgateway does (`shellexpand::full`, minus `~`):
/// `$VAR`, `${VAR}`, `${VAR:-default}` (default used when unset, taken literally), `$$` → `$`;
/// a `$` not followed by a name is kept. An unset variable without default is an error naming it
/// and its line. Comments are left as written, so a `$` in a comment never fails.
pub fn expand_env(text: &str, source_name: &str) -> Result<String, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    expand(text, source_name, &env_lookup).map(|e| e.text)
}

/// Parser options: strict on duplicates, bounded in depth and size.
fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    budget.max_total_scalar_bytes = MAX_CONFIG_BYTES;
    budget.max_reader_input_bytes = Some(MAX_CONFIG_BYTES);
    let mut options = Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    // We print our own `file:line:col: path: message`; a snippet would only repeat it.
    options.with_snippet = false;
    // Comments are never read into the model; not retaining them saves memory.
    options.emit_comments = false;
    options
}

/// The error that carries the real message and location, under snippet/alias wrappers.
fn original_error(mut err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match err {
            serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } => {
                err = error
            }
            _ => return err,
        }
    }
}

/// Control characters from the file (e.g. in an unknown key) must not reach a terminal raw.
fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// True when the text holds no YAML node: only blank lines, comments and document markers.
fn is_blank_document(text: &str) -> bool {
    text.lines().all(|line| {
        let t = line.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// Expanded text plus, per output line, where it came from.
struct Expanded {
    text: String,
    /// For output line `i + 1`: the original 1-based line, and whether expansion changed it.
    lines: Vec<(usize, bool)>,
}

impl Expanded {
    /// Maps a parser location in the expanded text back to the file as written.
    fn origin(&self, line: u64, column: u64) -> (Option<usize>, Option<usize>) {
        let idx = usize::try_from(line).ok().and_then(|l| l.checked_sub(1));
        match idx.and_then(|i| self.lines.get(i)) {
            Some(&(orig, changed)) => {
                let column = usize::try_from(column).ok().filter(|&c| c > 0 && !changed);
                (Some(orig), column)
            }
            // Past the last line (an error at end of input): count on from the last line.
            None => match (idx, self.lines.last()) {
                (Some(i), Some(&(last, _))) => (Some(last + (i + 1 - self.lines.len())), None),
                _ => (usize::try_from(line).ok(), None),
            },
        }
    }
}

/// Quote state carried across lines, since quoted YAML scalars may span lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Scanner state between lines.
struct Scan {
    quote: Quote,
    /// Inside a block scalar (`|`/`>`) whose header line had this indentation: deeper lines are
    /// its content, where `#` is text, not a comment.
    block_parent_indent: Option<usize>,
}

/// Expands line by line, so each reference knows its line and each output line its origin.
fn expand(text: &str, source_name: &str, lookup: Lookup) -> Result<Expanded, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut lines = Vec::new();
    let mut scan = Scan { quote: Quote::None, block_parent_indent: None };
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let lineno = i + 1;
        let (body, eol) = match raw.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (raw, ""),
        };
        let start = out.len();
        expand_line(body, lineno, source_name, lookup, &mut scan, &mut out)?;
        let changed = &out[start..] != body;
        // An expanded value may contain newlines; each output line maps back to this one.
        let extra = out[start..].matches('\n').count();
        lines.extend(std::iter::repeat_n((lineno, changed), extra + 1));
        out.push_str(eol);
    }
    Ok(Expanded { text: out, lines })
}

/// Leading spaces (YAML indents with spaces only).
fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Expands one line (without its newline) into `out`, tracking quotes, comments and block scalars.
fn expand_line(
    line: &str,
    lineno: usize,
    source_name: &str,
    lookup: Lookup,
    scan: &mut Scan,
    out: &mut String,
) -> Result<(), ConfigError> {
    if let Some(parent) = scan.block_parent_indent {
        if line.trim().is_empty() || indentation(line) > parent {
            // Block scalar content: every `$` is text to expand, `#` is not a comment.
            return expand_span(line, lineno, source_name, lookup, out);
        }
        scan.block_parent_indent = None;
    }
    if scan.quote == Quote::None && line.trim_start().starts_with('#') {
        out.push_str(line);
        return Ok(());
    }

    let bytes = line.as_bytes();
    let mut i = 0;
    let mut prev: Option<u8> = None;
    // True where a new scalar may start (line start, after `: `, `- `, `? `, `[`, `{`, `,`): only
    // there does a quote open a quoted scalar; elsewhere it is part of a plain scalar (`it's`).
    let mut at_scalar_start = true;
    // End of the content before a comment, to detect a block scalar header.
    let mut content_end = line.len();
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        match scan.quote {
            Quote::Double => {
                if c == b'\\' && matches!(next, Some(b'"' | b'\\')) {
                    out.push_str(&line[i..i + 2]);
                    i += 2;
                    prev = next;
                    continue;
                }
                if c == b'"' {
                    scan.quote = Quote::None;
                    at_scalar_start = false;
                }
            }
            Quote::Single => {
                if c == b'\'' && next == Some(b'\'') {
                    out.push_str("''");
                    i += 2;
                    prev = next;
                    continue;
                }
                if c == b'\'' {
                    scan.quote = Quote::None;
                    at_scalar_start = false;
                }
            }
            Quote::None => {
                if c == b'#' && prev.is_none_or(|p| p == b' ' || p == b'\t') {
                    content_end = i;
                    out.push_str(&line[i..]);
                    break;
                }
                let followed_by_space = next.is_none_or(|n| n == b' ' || n == b'\t');
                if (c == b'\'' || c == b'"') && at_scalar_start {
                    scan.quote = if c == b'\'' { Quote::Single } else { Quote::Double };
                } else if matches!(c, b'[' | b'{' | b',') || (matches!(c, b':' | b'-' | b'?') && followed_by_space) {
                    at_scalar_start = true;
                } else if c != b' ' && c != b'\t' && c != b'$' {
                    at_scalar_start = false;
                }
            }
        }
        if c == b'$' {
            if scan.quote == Quote::None {
                at_scalar_start = false;
            }
            i += expand_dollar(&line[i..], lineno, source_name, lookup, out)?;
            prev = Some(b'$');
            continue;
        }
        // Copy up to the next byte of interest; multi-byte characters are copied whole.
        let run = line[i..].char_indices().nth(1).map_or(line.len() - i, |(n, _)| n);
        out.push_str(&line[i..i + run]);
        prev = Some(c);
        i += run;
    }

    if scan.quote == Quote::None && is_block_scalar_header(&line[..content_end]) {
        scan.block_parent_indent = Some(indentation(line));
    }
    Ok(())
}

/// A line ending in `|` or `>` (with optional chomping/indent indicators) after a key or `- `.
fn is_block_scalar_header(content: &str) -> bool {
    let t = content.trim_end();
    let indicator = t.trim_end_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
    let Some(head) = indicator.strip_suffix('|').or_else(|| indicator.strip_suffix('>')) else {
        return false;
    };
    // Only where a value starts (`key: |`, `- |`, `? |`, or alone), not `a: x |` (plain text).
    let head = head.trim_end();
    head.is_empty() || head.ends_with(':') || head.ends_with('-') || head.ends_with('?')
}

/// Expands every `$` in `span` (no comment or quote handling).
fn expand_span(
    span: &str,
    lineno: usize,
    source_name: &str,
    lookup: Lookup,
    out: &mut String,
) -> Result<(), ConfigError> {
    let mut rest = span;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let used = expand_dollar(&rest[pos..], lineno, source_name, lookup, out)?;
        rest = &rest[pos + used..];
    }
    out.push_str(rest);
    Ok(())
}

/// shellexpand's name characters.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Expands the reference at the start of `s` (which starts with `$`) into `out`; returns the
/// bytes consumed. `${` must close on the same line, else it is literal (like an unbalanced `${`).
fn expand_dollar(
    s: &str,
    lineno: usize,
    source_name: &str,
    lookup: Lookup,
    out: &mut String,
) -> Result<usize, ConfigError> {
    let after = &s[1..];
    let missing = |var: &str| ConfigError::MissingEnv {
        source_name: source_name.to_string(),
        line: lineno,
        var: var.to_string(),
    };
    match after.chars().next() {
        Some('{') => {
            let Some(close) = after.find('}') else {
                out.push_str("${");
                return Ok(2);
            };
            let inner = &after[1..close];
            // As in shellexpand, `${:-x}` is not a default (there is no name).
            let (name, default) = match inner.find(":-") {
                Some(split) if split > 0 => (&inner[..split], Some(&inner[split + 2..])),
                _ => (inner, None),
            };
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(missing(name)),
            }
            Ok(1 + close + 1)
        }
        Some(c) if is_name_char(c) => {
            let len = after.find(|c: char| !is_name_char(c)).unwrap_or(after.len());
            let name = &after[..len];
            let value = lookup(name).ok_or_else(|| missing(name))?;
            out.push_str(&value);
            Ok(1 + len)
        }
        Some('$') => {
            out.push('$');
            Ok(2)
        }
        _ => {
            out.push('$');
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed environment, so tests never touch the real one.
    fn fake_env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.1:9000".into()),
            "PORT" => Some("8123".into()),
            "EMPTY" => Some(String::new()),
            "MULTI" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn expand_fake(text: &str) -> Result<String, ConfigError> {
        expand(text, "t.yaml", &fake_env).map(|e| e.text)
    }

    fn parse_err(text: &str) -> (String, Option<usize>, Option<usize>, String) {
        match parse_with(text, "t.yaml", &fake_env) {
            Err(ConfigError::Parse { path, line, column, message, .. }) => (path, line, column, message),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    const ROUTE_PREFIX: &str = "binds:\n- port: 8000\n  listeners:\n  - routes:\n";

    #[test]
    fn unknown_field_names_path_and_line() {
        let text = "binds:\n- port: 8000\n  listeners:\n  - prot: HTTP\n";
        let (path, line, column, message) = parse_err(text);
        assert_eq!(path, "binds[0].listeners[0]");
        assert_eq!(line, Some(4));
        assert_eq!(column, Some(5));
        assert!(message.starts_with("unknown field `prot`, expected one of"), "{message}");
        assert!(message.contains("protocol"), "{message}");
        let shown = parse_with(text, "gw.yaml", &fake_env).unwrap_err().to_string();
        assert!(shown.starts_with("gw.yaml:4:5: binds[0].listeners[0]: unknown field `prot`"), "{shown}");
    }

    #[test]
    fn unknown_top_level_field_has_empty_path() {
        let (path, line, _, message) = parse_err("# header\nbind:\n- port: 1\n");
        assert_eq!(path, "");
        assert_eq!(line, Some(2));
        assert!(message.contains("unknown field `bind`"), "{message}");
    }

    #[test]
    fn wrong_type_names_path_and_line() {
        let (path, line, _, message) = parse_err("binds:\n- port: abc\n  listeners: []\n");
        assert_eq!(path, "binds[0].port");
        assert_eq!(line, Some(2));
        assert!(message.contains("u16") && message.contains("abc"), "{message}");

        let text = format!("{ROUTE_PREFIX}    - backends:\n      - host: a:1\n        weight: [1]\n");
        let (path, line, _, _) = parse_err(&text);
        assert_eq!(path, "binds[0].listeners[0].routes[0].backends[0].weight");
        assert_eq!(line, Some(7));
    }

    #[test]
    fn duration_error_propagates_with_path() {
        let text = format!(
            "{ROUTE_PREFIX}    - backends: []\n    - policies:\n        timeout:\n          requestTimeout: 10x\n"
        );
        let (path, line, _, message) = parse_err(&text);
        assert_eq!(path, "binds[0].listeners[0].routes[1].policies.timeout.requestTimeout");
        assert_eq!(line, Some(8));
        assert!(message.contains("invalid duration `10x`"), "{message}");
    }

    #[test]
    fn missing_field_and_bad_variant_are_located() {
        let (path, line, _, message) = parse_err("binds:\n- port: 8000\n");
        assert_eq!((path.as_str(), line), ("binds[0]", Some(2)));
        assert!(message.contains("missing field `listeners`"), "{message}");

        let text = format!("{ROUTE_PREFIX}    - matches:\n      - path: {{prefix: /}}\n");
        let (path, line, _, message) = parse_err(&text);
        assert_eq!(path, "binds[0].listeners[0].routes[0].matches[0].path");
        assert_eq!(line, Some(6));
        assert!(message.contains("unknown variant `prefix`"), "{message}");
    }

    #[test]
    fn duplicate_keys_rejected() {
        let (path, line, _, message) = parse_err("config: {}\nbinds: []\nconfig: {}\n");
        assert_eq!(path, "");
        assert_eq!(line, Some(3));
        assert!(message.contains("duplicate key `config`"), "{message}");

        // Also inside a free-form map (header map form), which serde itself would accept.
        let text =
            format!("{ROUTE_PREFIX}    - policies:\n        requestHeaderModifier:\n          set: {{a: b, a: c}}\n");
        let (path, line, _, message) = parse_err(&text);
        assert_eq!(path, "binds[0].listeners[0].routes[0].policies.requestHeaderModifier.set");
        assert_eq!(line, Some(7));
        assert!(message.contains("duplicate key `a`"), "{message}");
    }

    #[test]
    fn empty_documents_are_default_config() {
        for text in ["", "\n", "# nothing here\n", "---\n", "{}", "---\n{}\n"] {
            let cfg = parse_with(text, "t.yaml", &fake_env).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
            assert!(cfg.binds.is_empty());
            assert_eq!(cfg.config.admin_addr, "127.0.0.1:15000");
        }
    }

    #[test]
    fn syntax_error_has_line() {
        let (path, line, _, _) = parse_err("binds:\n- port: 1\n  listeners: [\n\n");
        assert_eq!(path, "binds[0].listeners");
        assert!(line.is_some());
        let (_, line, _, _) = parse_err("config:\n  workers: 2\n driver: auto\n");
        assert_eq!(line, Some(3));
    }

    #[test]
    fn env_expansion_forms() {
        assert_eq!(expand_fake("a: $HOST\nb: ${PORT}x\n").unwrap(), "a: 10.0.0.1:9000\nb: 8123x\n");
        assert_eq!(
            expand_fake("a: ${NOPE:-127.0.0.1:8080}\nb: ${PORT:-1}\nc: \"${EMPTY:-d}\"").unwrap(),
            "a: 127.0.0.1:8080\nb: 8123\nc: \"\""
        );
        assert_eq!(expand_fake("a: \"$$HOST costs $$5\"").unwrap(), "a: \"$HOST costs $5\"");
        // A `$` not followed by a name, and an unbalanced `${`, stay as written.
        assert_eq!(expand_fake("a: 5$ $. ${x\n").unwrap(), "a: 5$ $. ${x\n");
        // `~` is not expanded.
        assert_eq!(expand_fake("a: ~/x\n").unwrap(), "a: ~/x\n");
        // Expansion also happens inside quotes and block scalars, like shellexpand on the text.
        assert_eq!(expand_fake("a: '$PORT'\nb: |\n  # $PORT\n  x\n").unwrap(), "a: '8123'\nb: |\n  # 8123\n  x\n");
    }

    #[test]
    fn env_missing_var_names_it_and_its_line() {
        match expand_fake("a: 1\nb:\n  c: ${HOST}/$NOT_SET_ANYWHERE\n") {
            Err(ConfigError::MissingEnv { line, var, .. }) => {
                assert_eq!(line, 3);
                assert_eq!(var, "NOT_SET_ANYWHERE");
            }
            other => panic!("{other:?}"),
        }
        let err = expand_env("x: 1\ny: ${RINGGATE_TEST_SURELY_UNSET_VAR_42}\n", "c.yaml").unwrap_err().to_string();
        assert_eq!(err, "c.yaml:2: environment variable `RINGGATE_TEST_SURELY_UNSET_VAR_42` is not set");
    }

    #[test]
    fn dollar_in_comment_is_ignored() {
        let text = "# cost: $UNSET_A\n  # $UNSET_B ${UNSET_C\na: 1 # $UNSET_D\nb: \"x # $PORT\" # $UNSET_E\nc: 'it''s # $PORT' #$UNSET_F\nd: it's $PORT # $UNSET_G\n";
        assert_eq!(
            expand_fake(text).unwrap(),
            "# cost: $UNSET_A\n  # $UNSET_B ${UNSET_C\na: 1 # $UNSET_D\nb: \"x # 8123\" # $UNSET_E\nc: 'it''s # 8123' #$UNSET_F\nd: it's 8123 # $UNSET_G\n"
        );
        // A `#` glued to text is not a comment (YAML needs a space before it).
        assert!(expand_fake("a: x#$UNSET_H\n").is_err());
        // A multi-line double-quoted scalar keeps its `#` lines as text.
        assert_eq!(expand_fake("a: \"one\n  # $PORT\"\n# $UNSET_I\n").unwrap(), "a: \"one\n  # 8123\"\n# $UNSET_I\n");
    }

    #[test]
    fn expansion_never_panics() {
        // Deterministic pseudo-random strings over the characters the scanner treats specially.
        let alphabet: Vec<char> = "$${}:-#'\"\\ aP|>\né_".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            let len = (seed % 16) as usize;
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let _ = expand_fake(&text);
            let _ = parse_with(&text, "t.yaml", &fake_env);
        }
    }

    #[test]
    fn block_scalars_and_bom() {
        // Inside a block scalar, `#` lines are text and are expanded; the block ends on dedent.
        assert_eq!(
            expand_fake("a: |-\n  # $PORT\n\n  x\n# $UNSET_A\nb: x |\n  # $UNSET_B\n").unwrap(),
            "a: |-\n  # 8123\n\n  x\n# $UNSET_A\nb: x |\n  # $UNSET_B\n"
        );
        assert!(expand_fake("- >\n  # $UNSET_C\n").is_err());
        let cfg = parse_with("\u{feff}# $UNSET_D\nbinds: []\n", "t.yaml", &fake_env);
        assert!(cfg.is_ok(), "{cfg:?}");
    }

    #[test]
    fn lines_refer_to_the_file_as_written() {
        // MULTI expands to two lines; the error on the following line keeps its own number,
        // and the column is dropped on a line that expansion changed.
        let text = "config:\n  logging:\n    level: \"$MULTI\"\n  bogus: $PORT\n";
        let (path, line, column, _) = parse_err(text);
        assert_eq!(path, "config");
        assert_eq!(line, Some(4));
        assert_eq!(column, None);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        // no config field is free-form, so deep nesting fails on types or on the parser's budget
        for text in [
            format!("mcp: {}", "[".repeat(200_000)),
            format!("binds: {}", "[".repeat(200_000)),
            format!("mcp: {}", "{a: ".repeat(200_000)),
            format!("mcp:\n{}", (1..2000).map(|d| format!("{}- \n", " ".repeat(d))).collect::<String>()),
        ] {
            let (_, line, _, message) = parse_err(&text);
            assert!(line.is_some(), "{message}");
        }
    }

    #[test]
    fn oversized_text_is_rejected() {
        let text = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
        let (path, line, _, message) = parse_err(&text);
        assert_eq!((path.as_str(), line), ("", None));
        assert!(message.contains("16 MiB"), "{message}");
    }

    #[test]
    fn load_file_reports_io_errors() {
        let err = load_file(Path::new("/nonexistent/ringgate.yaml")).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot read /nonexistent/ringgate.yaml:"));
    }

    fn example_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    /// The examples shipped in `config/`; keep in sync with the directory.
    const EXAMPLES: &[&str] = &[
        "basic-proxy.yaml",
        "hostnames.yaml",
        "matches.yaml",
        "weighted.yaml",
        "headers.yaml",
        "redirect.yaml",
        "rewrite.yaml",
        "direct-response.yaml",
        "timeout-retry.yaml",
        "cors.yaml",
        "limits.yaml",
        "env.yaml",
        "agentgateway-http.yaml",
        "mcp-basic.yaml",
        "mcp-federation.yaml",
        "mcp-secure.yaml",
        "auth.yaml",
        "mcp-tool-guard.yaml",
        "ext-authz.yaml",
        "global-rate-limit.yaml",
        "tls.yaml",
        "targeted-policies.yaml",
        "gateways.yaml",
    ];

    #[test]
    fn every_example_parses() {
        for name in EXAMPLES {
            let path = example_dir().join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("# "), "{name} must start with a comment");
            let cfg = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!cfg.binds.is_empty() || !cfg.gateways.is_empty() || cfg.mcp.is_some(), "{name}");
            let gateways = cfg.gateways.values().map(|g| g.port);
            let mcp = cfg.mcp.as_ref().filter(|m| m.gateways.is_none() && cfg.gateways.is_empty()).map(|m| m.port());
            for port in cfg.binds.iter().map(|b| b.port).chain(gateways).chain(mcp) {
                assert!((8000..=9000).contains(&port), "{name}: port {port}");
            }
        }
        let mut on_disk: Vec<String> = std::fs::read_dir(example_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = EXAMPLES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn examples_mean_what_they_say() {
        use crate::config::model::{HeaderList, LogFormat, Workers};
        let load = |name: &str| load_file(&example_dir().join(name)).unwrap();

        let env = load("env.yaml");
        let route = &env.binds[0].listeners[0].routes[0];
        if std::env::var_os("UPSTREAM").is_none() {
            assert_eq!(route.backends[0].host.as_deref(), Some("127.0.0.1:8080"));
        }
        let set = &route.policies.request_header_modifier.as_ref().unwrap().set;
        assert_eq!(set.pairs(), vec![("x-price".to_string(), "$5".to_string())]);

        let limits = load("limits.yaml");
        assert_eq!(limits.config.workers, Workers::Count(4));
        assert_eq!(limits.config.logging.format, LogFormat::Json);
        assert_eq!(limits.config.drain_timeout.get().as_secs(), 30);
        assert_eq!(limits.frontend_policies.http.max_headers, 64);

        let ag = load("agentgateway-http.yaml");
        assert_eq!(ag.config.workers, Workers::Count(2));
        assert_eq!(ag.config.drain_timeout.get().as_secs(), 15);

        let headers = load("headers.yaml");
        let routes = &headers.binds[0].listeners[0].routes;
        let req = |i: usize| routes[i].policies.request_header_modifier.as_ref().unwrap();
        assert!(matches!(req(0).add, HeaderList::Map(_)));
        assert!(matches!(req(1).add, HeaderList::List(_)));

        // the example's pin is the demo's real `echo`, so the example serves it
        let guard = load("mcp-tool-guard.yaml");
        let demo = &guard.binds[0].listeners[0].routes[0].backends[0].mcp.as_ref().unwrap().targets[0];
        let tools = crate::mcp::demo::handle("tools/list", None).unwrap();
        let echo = tools["tools"].as_array().unwrap().iter().find(|t| t["name"] == "echo").unwrap();
        let hash = crate::mcp::poison::definition_hash(echo, &mut Vec::new());
        assert_eq!(demo.tool_pins["echo"], crate::digest::hex(&hash));
        let authz = load("ext-authz.yaml");
        let pol = &authz.binds[0].listeners[0].routes[0].policies;
        let x = pol.ext_authz.as_ref().unwrap();
        assert_eq!(x.failure_mode, crate::config::security::ExtAuthzFailureMode::Deny);
        assert_eq!(x.timeout.unwrap().get().as_millis(), 500);
        assert!(matches!(pol.backend_auth, Some(crate::config::security::BackendAuth::Key(_))));
        let global = load("global-rate-limit.yaml");
        let g = global.binds[0].listeners[0].routes[0].policies.global_rate_limit.as_ref().unwrap();
        assert_eq!((g.limits.len(), g.failure_mode), (2, crate::ratelimit::global::FailureMode::FailClosed));
        assert_eq!(g.limits[1].key.as_deref(), Some("request.headers[\"x-user\"]"));

        let weighted = load("weighted.yaml");
        let weights: Vec<u32> = weighted.binds[0].listeners[0].routes[0].backends.iter().map(|b| b.weight).collect();
        assert_eq!(weights, vec![90, 10]);
    }

    #[test]
    fn workers_accepts_auto_or_count() {
        use crate::config::model::Workers;
        let workers = |text: &str| parse_with(text, "t.yaml", &fake_env).map(|c| c.config.workers);
        assert_eq!(workers("config: {workers: auto}").unwrap(), Workers::Auto);
        assert_eq!(workers("config: {workerThreads: 3}").unwrap(), Workers::Count(3));
        let (path, line, _, _) = parse_err("config:\n  workers: many\n");
        assert_eq!((path.as_str(), line), ("config.workers", Some(2)));
    }

    /// Regenerates `config/schema.json` with `RINGGATE_WRITE_SCHEMA=1`; otherwise checks it is current.
    #[test]
    fn schema_file_is_current() {
        let path = example_dir().join("schema.json");
        let mut want = serde_json::to_string_pretty(&json_schema()).unwrap();
        want.push('\n');
        if std::env::var_os("RINGGATE_WRITE_SCHEMA").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "config/schema.json is stale: rerun with RINGGATE_WRITE_SCHEMA=1");
    }

    #[test]
    fn schema_aliases_are_real_aliases() {
        let schema = json_schema();
        for (definition, alias, field) in SCHEMA_ALIASES {
            let props = &schema["definitions"][definition]["properties"];
            assert!(props[alias].is_object(), "{alias} missing from {definition}");
            let value = if field.ends_with("Timeout") { "5s" } else { "7" };
            let (head, indent) = match *definition {
                "ProcessConfig" => ("config:\n", "  "),
                _ => ("frontendPolicies:\n  http:\n", "    "),
            };
            let text = format!("{head}{indent}{alias}: {value}\n");
            parse_with(&text, "t.yaml", &fake_env).unwrap_or_else(|e| panic!("{alias}: {e}"));
            // serde sees alias and field as one field, so giving both is a duplicate.
            let both = format!("{text}{indent}{field}: {value}\n");
            assert!(parse_with(&both, "t.yaml", &fake_env).is_err(), "{both}");
        }
    }

    #[test]
    fn schema_is_titled_and_strict() {
        let schema = json_schema();
        assert_eq!(schema["title"], "ringgate configuration");
        assert_eq!(schema["additionalProperties"], false);
        assert!(schema["definitions"]["Listener"].is_object());
    }
}
