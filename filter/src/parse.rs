//! The bexpr grammar, with winnow: text to [`Expr`].
//!
//! The rules follow go-bexpr's `grammar.peg`. Where the PEG would backtrack out of a
//! construct that can only fail (an unclosed parenthesis, a bad number, an unterminated
//! string), the parser cuts instead: the result is the same error, and parsing stays
//! linear in the input (the PEG's retry of a parenthesised expression is exponential in
//! the nesting without memoisation).

use regex::Regex;
use winnow::combinator::{alt, opt, preceded, repeat};
use winnow::error::{ContextError, ErrMode, FromExternalError, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::stream::Stream;
use winnow::token::{literal, one_of, take_while};

use crate::{FilterError, MAX_DEPTH};

/// A parsed expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// True if any operand is (evaluated left to right, short-circuiting).
    Or(Vec<Expr>),
    /// True if every operand is (evaluated left to right, short-circuiting).
    And(Vec<Expr>),
    /// The negation of the operand.
    Not(Box<Expr>),
    /// A comparison of a selected field with a value.
    Match(Box<Match>),
}

/// `Selector op Value`, `Selector is [not] empty` or `Value [not] in Selector`.
#[derive(Debug, Clone)]
pub(crate) struct Match {
    pub(crate) selector: Vec<String>,
    pub(crate) op: Op,
}

/// A match operator with its value, pre-converted for the field types it may meet.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Equal(MatchValue),
    NotEqual(MatchValue),
    /// `in` and `contains`.
    In(MatchValue),
    /// `not in` and `not contains`.
    NotIn(MatchValue),
    IsEmpty,
    IsNotEmpty,
    Matches(Box<Regex>),
    NotMatches(Box<Regex>),
}

/// The raw text of a value and its conversions, done once at parse time.
#[derive(Debug, Clone)]
pub(crate) struct MatchValue {
    pub(crate) raw: String,
    pub(crate) int: Option<i64>,
    pub(crate) uint: Option<u64>,
    pub(crate) float: Option<f64>,
    pub(crate) bool: Option<bool>,
}

impl MatchValue {
    fn new(raw: String) -> MatchValue {
        MatchValue {
            int: go_parse_int(&raw),
            uint: go_parse_uint(&raw),
            float: go_parse_float(&raw),
            bool: go_parse_bool(&raw),
            raw,
        }
    }
}

/// A parse failure's own message (the grammar's named errors, a bad regex, the depth
/// bound), carried as the winnow error's cause.
#[derive(Debug)]
struct Msg(String);

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Msg {}

/// The nesting bound was hit; distinguished from other messages for [`FilterError::TooDeep`].
#[derive(Debug)]
struct TooDeep;

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expression nested deeper than {MAX_DEPTH} levels")
    }
}

impl std::error::Error for TooDeep {}

type PResult<T> = ModalResult<T>;

fn cut_msg(input: &&str, message: impl Into<String>) -> ErrMode<ContextError> {
    ErrMode::Cut(ContextError::from_external_error(
        input,
        Msg(message.into()),
    ))
}

/// Parses a whole expression.
pub(crate) fn parse(source: &str) -> Result<Expr, FilterError> {
    let mut input = source;
    let result = (opt(ws), |i: &mut &str| or_expr(i, 0), opt(ws))
        .map(|(_, expr, _)| expr)
        .parse_next(&mut input);
    let error = match result {
        Ok(expr) if input.is_empty() => return Ok(expr),
        // The PEG's EOF rule: something is left that no rule takes.
        Ok(_) => ContextError::new(),
        Err(ErrMode::Backtrack(e) | ErrMode::Cut(e)) => e,
        Err(ErrMode::Incomplete(_)) => ContextError::new(),
    };
    if error.cause().is_some_and(|c| c.is::<TooDeep>()) {
        return Err(FilterError::TooDeep { max: MAX_DEPTH });
    }
    let offset = source.len() - input.len();
    Err(FilterError::Syntax(format!(
        "{}: {}",
        position(source, offset),
        describe(&error)
    )))
}

/// `line:column (offset)`, as pigeon (bexpr's parser generator) reports a position:
/// 1-based line and column (in characters), 0-based byte offset.
fn position(source: &str, offset: usize) -> String {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{column} ({offset})")
}

fn describe(error: &ContextError) -> String {
    if let Some(cause) = error.cause() {
        return cause.to_string();
    }
    let expected: Vec<String> = error
        .context()
        .filter_map(|c| match c {
            StrContext::Expected(StrContextValue::StringLiteral(s)) => Some(format!("{s:?}")),
            StrContext::Expected(StrContextValue::Description(s)) => Some((*s).to_owned()),
            StrContext::Expected(StrContextValue::CharLiteral(c)) => Some(format!("{c:?}")),
            StrContext::Label(s) => Some((*s).to_owned()),
            _ => None,
        })
        .collect();
    if expected.is_empty() {
        "no match found".to_owned()
    } else {
        format!("no match found, expected: {}", expected.join(", "))
    }
}

/// `_ "whitespace" <- [ \t\r\n]+`
fn ws<'i>(i: &mut &'i str) -> PResult<&'i str> {
    take_while(1.., [' ', '\t', '\r', '\n']).parse_next(i)
}

/// `_ <word> _`: a word operator, whitespace on both sides.
fn keyword<'i>(word: &'static str) -> impl Parser<&'i str, (), ErrMode<ContextError>> {
    (ws, literal(word), ws).void()
}

/// `Or <- And (_ "or" _ And)*`, kept flat (bexpr's right recursion builds the same truth).
fn or_expr(i: &mut &str, depth: usize) -> PResult<Expr> {
    chain(i, depth, "or", and_expr, Expr::Or)
}

/// `And <- Not (_ "and" _ Not)*`
fn and_expr(i: &mut &str, depth: usize) -> PResult<Expr> {
    chain(i, depth, "and", not_expr, Expr::And)
}

/// `Operand (_ word _ Operand)*` as one flat node made by `node` (the operand alone when
/// there is one): a `word` not followed by an operand is left unread.
fn chain(
    i: &mut &str,
    depth: usize,
    word: &'static str,
    operand: fn(&mut &str, usize) -> PResult<Expr>,
    node: fn(Vec<Expr>) -> Expr,
) -> PResult<Expr> {
    let mut items = vec![operand(i, depth)?];
    loop {
        let start = i.checkpoint();
        if keyword(word).parse_next(i).is_err() {
            i.reset(&start);
            break;
        }
        match operand(i, depth) {
            Ok(e) => items.push(e),
            Err(ErrMode::Backtrack(_)) => {
                i.reset(&start);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(if items.len() == 1 {
        items.pop().map_or(node(Vec::new()), |e| e)
    } else {
        node(items)
    })
}

fn too_deep(i: &&str) -> ErrMode<ContextError> {
    ErrMode::Cut(ContextError::from_external_error(i, TooDeep))
}

/// `Not <- "not" _ Not / Parenthesized`; `not not x` collapses to `x`, as in bexpr.
fn not_expr(i: &mut &str, depth: usize) -> PResult<Expr> {
    let start = i.checkpoint();
    if (literal("not"), ws).parse_next(i).is_err() {
        i.reset(&start);
    } else {
        if depth >= MAX_DEPTH {
            return Err(too_deep(i));
        }
        match not_expr(i, depth + 1) {
            Ok(Expr::Not(inner)) => return Ok(*inner),
            Ok(e) => return Ok(Expr::Not(Box::new(e))),
            // `not` may still be a selector or a bare value: `not in Tags`.
            Err(ErrMode::Backtrack(_)) => i.reset(&start),
            Err(e) => return Err(e),
        }
    }
    parenthesized(i, depth)
}

/// `"(" _? Or _? ")" / Match`; nothing but a group starts with "(", so the group cuts.
fn parenthesized(i: &mut &str, depth: usize) -> PResult<Expr> {
    if !i.starts_with('(') {
        return match_expr(i);
    }
    if depth >= MAX_DEPTH {
        return Err(too_deep(i));
    }
    let _ = i.next_token();
    let _ = opt(ws).parse_next(i)?;
    let expr = match or_expr(i, depth + 1) {
        Ok(e) => e,
        Err(ErrMode::Backtrack(e)) => return Err(ErrMode::Cut(e)),
        Err(e) => return Err(e),
    };
    let _ = opt(ws).parse_next(i)?;
    if i.starts_with(')') {
        let _ = i.next_token();
        Ok(expr)
    } else {
        Err(cut_msg(i, "Unmatched parentheses"))
    }
}

/// `MatchSelectorOpValue / MatchSelectorOp / MatchValueOpSelector`
fn match_expr(i: &mut &str) -> PResult<Expr> {
    alt((selector_op_value, selector_op, value_op_selector))
        .context(StrContext::Label("match"))
        .map(|m| Expr::Match(Box::new(m)))
        .parse_next(i)
}

#[derive(Clone, Copy)]
enum BinOp {
    Equal,
    NotEqual,
    Contains,
    NotContains,
    Matches,
    NotMatches,
}

fn selector_op_value(i: &mut &str) -> PResult<Match> {
    let selector = selector(i)?;
    let op = alt((
        (opt(ws), literal("=="), opt(ws)).value(BinOp::Equal),
        (opt(ws), literal("!="), opt(ws)).value(BinOp::NotEqual),
        keyword("contains").value(BinOp::Contains),
        (ws, literal("not"), keyword("contains")).value(BinOp::NotContains),
        keyword("matches").value(BinOp::Matches),
        (ws, literal("not"), keyword("matches")).value(BinOp::NotMatches),
    ))
    .parse_next(i)?;
    let value_start = *i;
    let raw = value(i)?;
    let op = match op {
        BinOp::Equal => Op::Equal(MatchValue::new(raw)),
        BinOp::NotEqual => Op::NotEqual(MatchValue::new(raw)),
        BinOp::Contains => Op::In(MatchValue::new(raw)),
        BinOp::NotContains => Op::NotIn(MatchValue::new(raw)),
        BinOp::Matches | BinOp::NotMatches => {
            let re = compile_regex(&raw).map_err(|m| cut_msg(&value_start, m))?;
            if matches!(op, BinOp::Matches) {
                Op::Matches(Box::new(re))
            } else {
                Op::NotMatches(Box::new(re))
            }
        }
    };
    Ok(Match { selector, op })
}

/// The regex size bound keeps a hostile pattern from taking much memory to compile.
fn compile_regex(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("failed to compile regular expression {pattern:?}: {e}"))
}

fn selector_op(i: &mut &str) -> PResult<Match> {
    let selector = selector(i)?;
    let op = alt((
        (ws, literal("is"), ws, literal("empty")).value(Op::IsEmpty),
        (ws, literal("is"), ws, literal("not"), ws, literal("empty")).value(Op::IsNotEmpty),
    ))
    .parse_next(i)?;
    Ok(Match { selector, op })
}

fn value_op_selector(i: &mut &str) -> PResult<Match> {
    let raw = value(i)?;
    let negated = alt((
        keyword("in").value(false),
        (ws, literal("not"), keyword("in")).value(true),
    ))
    .parse_next(i)?;
    let selector = match selector(i) {
        Ok(s) => s,
        Err(ErrMode::Backtrack(_)) => return Err(cut_msg(i, "Invalid selector")),
        Err(e) => return Err(e),
    };
    let value = MatchValue::new(raw);
    let op = if negated {
        Op::NotIn(value)
    } else {
        Op::In(value)
    };
    Ok(Match { selector, op })
}

/// `Identifier <- [a-zA-Z] [a-zA-Z0-9_/]*`
fn identifier<'i>(i: &mut &'i str) -> PResult<&'i str> {
    (
        one_of(|c: char| c.is_ascii_alphabetic()),
        take_while(0.., |c: char| {
            c.is_ascii_alphanumeric() || c == '_' || c == '/'
        }),
    )
        .take()
        .parse_next(i)
}

/// `Selector <- Identifier ("." Identifier / Index / "." [0-9]+)*`
fn selector(i: &mut &str) -> PResult<Vec<String>> {
    let first = identifier
        .context(StrContext::Label("selector"))
        .parse_next(i)?;
    let mut path = vec![first.to_owned()];
    let rest: Vec<String> = repeat(
        0..,
        alt((
            preceded('.', identifier).map(str::to_owned),
            index,
            preceded('.', take_while(1.., |c: char| c.is_ascii_digit())).map(str::to_owned),
        )),
    )
    .parse_next(i)?;
    path.extend(rest);
    Ok(path)
}

/// `Index <- "[" _? String _? "]"`, with bexpr's two named errors.
fn index(i: &mut &str) -> PResult<String> {
    if !i.starts_with('[') {
        return Err(ErrMode::Backtrack(ContextError::new()));
    }
    let _ = i.next_token();
    let _ = opt(ws).parse_next(i)?;
    let key = match string_literal(i) {
        Ok(s) => s,
        Err(ErrMode::Backtrack(_)) => return Err(cut_msg(i, "Invalid index")),
        Err(e) => return Err(e),
    };
    let _ = opt(ws).parse_next(i)?;
    if i.starts_with(']') {
        let _ = i.next_token();
        Ok(key)
    } else {
        Err(cut_msg(i, "Unclosed index expression"))
    }
}

/// `Value <- Selector / Number / String`; a selector's value is its parts joined with ".".
fn value(i: &mut &str) -> PResult<String> {
    alt((selector.map(|path| path.join(".")), number, string_literal))
        .context(StrContext::Expected(StrContextValue::Description("value")))
        .parse_next(i)
}

/// `Number <- "-"? ("0" / [1-9][0-9]*) ("." [0-9]+)? &(_ / EOF / ")")`
fn number(i: &mut &str) -> PResult<String> {
    let text = (
        opt('-'),
        alt((
            literal("0").void(),
            (
                one_of('1'..='9'),
                take_while(0.., |c: char| c.is_ascii_digit()),
            )
                .void(),
        )),
        opt(('.', take_while(1.., |c: char| c.is_ascii_digit()))),
    )
        .take()
        .parse_next(i)?;
    match i.chars().next() {
        None | Some(' ' | '\t' | '\r' | '\n' | ')') => Ok(text.to_owned()),
        Some(_) => Err(cut_msg(i, "Invalid number literal")),
    }
}

/// A backtick raw string or a double-quoted string with Go's escapes (`strconv.Unquote`).
///
/// bexpr's grammar ends a double-quoted string at the first `"`, so `\"` can never
/// appear in one; here `\"` is an escaped quote. That only accepts expressions bexpr
/// rejects.
fn string_literal(i: &mut &str) -> PResult<String> {
    let start = *i;
    match i.chars().next() {
        Some('`') => {
            let body = &i[1..];
            match body.find('`') {
                Some(end) => {
                    let text = body[..end].replace('\r', "");
                    *i = &body[end + 1..];
                    Ok(text)
                }
                None => {
                    *i = &i[i.len()..];
                    Err(cut_msg(i, "Unterminated string literal"))
                }
            }
        }
        Some('"') => {
            let body = &i[1..];
            let mut escaped = false;
            let mut end = None;
            for (at, c) in body.char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = Some(at);
                    break;
                }
            }
            let Some(end) = end else {
                *i = &i[i.len()..];
                return Err(cut_msg(i, "Unterminated string literal"));
            };
            *i = &body[end + 1..];
            unquote(&body[..end]).ok_or_else(|| cut_msg(&start, "invalid syntax"))
        }
        _ => Err(ErrMode::Backtrack(ContextError::new())),
    }
}

/// The body of a Go double-quoted string literal, escapes resolved; `None` where Go's
/// `strconv.Unquote` fails ("invalid syntax").
fn unquote(body: &str) -> Option<String> {
    if !body.contains('\\') {
        return (!body.contains('\n')).then(|| body.to_owned());
    }
    let mut out = String::with_capacity(body.len());
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = body.chars().peekable();
    // Octal and \x escapes produce bytes that must together form UTF-8.
    let flush = |bytes: &mut Vec<u8>, out: &mut String| -> Option<()> {
        if !bytes.is_empty() {
            out.push_str(std::str::from_utf8(bytes).ok()?);
            bytes.clear();
        }
        Some(())
    };
    while let Some(c) = chars.next() {
        if c == '\n' {
            return None;
        }
        if c != '\\' {
            flush(&mut bytes, &mut out)?;
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(s) = simple {
            flush(&mut bytes, &mut out)?;
            out.push(s);
            continue;
        }
        let digits =
            |n: usize, radix: u32, chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                let mut v: u32 = 0;
                for _ in 0..n {
                    v = v * radix + chars.next()?.to_digit(radix)?;
                }
                Some(v)
            };
        match e {
            'x' => bytes.push(u8::try_from(digits(2, 16, &mut chars)?).ok()?),
            '0'..='7' => {
                let rest = digits(2, 8, &mut chars)?;
                let v = (e.to_digit(8)? << 6) | rest;
                bytes.push(u8::try_from(v).ok()?);
            }
            'u' | 'U' => {
                flush(&mut bytes, &mut out)?;
                let n = if e == 'u' { 4 } else { 8 };
                out.push(char::from_u32(digits(n, 16, &mut chars)?)?);
            }
            _ => return None,
        }
    }
    flush(&mut bytes, &mut out)?;
    Some(out)
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The magnitude of Go's `strconv.ParseUint(s, 0, 64)`: base prefixes `0x`, `0o`, `0b`,
/// a leading `0` for octal, underscores only after a prefix.
fn go_parse_magnitude(s: &str) -> Option<u64> {
    let (radix, digits) = if let Some(d) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (2, d)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let digits = if radix != 10 {
        digits.replace('_', "")
    } else {
        digits.to_owned()
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, magnitude) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let m = go_parse_magnitude(magnitude)?;
    if negative {
        0i64.checked_sub_unsigned(m)
    } else {
        i64::try_from(m).ok()
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
fn go_parse_uint(s: &str) -> Option<u64> {
    go_parse_magnitude(s)
}

/// Go's `strconv.ParseFloat(s, 64)` (Rust's float syntax is a close match).
fn go_parse_float(s: &str) -> Option<f64> {
    s.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_conversions() {
        assert_eq!(go_parse_int("42"), Some(42));
        assert_eq!(go_parse_int("-42"), Some(-42));
        assert_eq!(go_parse_int("+7"), Some(7));
        assert_eq!(go_parse_int("0x1F"), Some(31));
        assert_eq!(go_parse_int("0o17"), Some(15));
        assert_eq!(go_parse_int("017"), Some(15));
        assert_eq!(go_parse_int("0b101"), Some(5));
        assert_eq!(go_parse_int("0x_1F"), Some(31));
        assert_eq!(go_parse_int("1_000"), None);
        assert_eq!(go_parse_int("1.0"), None);
        assert_eq!(go_parse_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(go_parse_int("9223372036854775808"), None);
        assert_eq!(go_parse_uint("18446744073709551615"), Some(u64::MAX));
        assert_eq!(go_parse_uint("-1"), None);
        assert_eq!(go_parse_bool("T"), Some(true));
        assert_eq!(go_parse_bool("yes"), None);
        assert_eq!(go_parse_float("1e3"), Some(1000.0));
    }

    #[test]
    fn go_unquote() {
        assert_eq!(unquote("plain").as_deref(), Some("plain"));
        assert_eq!(unquote(r"a\tb").as_deref(), Some("a\tb"));
        assert_eq!(unquote(r"\t\n\\").as_deref(), Some("\t\n\\"));
        assert_eq!(
            unquote(r"\u00e9\U0001F600").as_deref(),
            Some("\u{e9}\u{1F600}")
        );
        assert_eq!(unquote(r"\303\251").as_deref(), Some("\u{e9}"));
        assert_eq!(unquote(r"\xff"), None);
        assert_eq!(unquote(r"\q"), None);
        assert_eq!(unquote("a\nb"), None);
    }
}
