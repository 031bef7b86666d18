//! Consul's `?filter=` expression language, parsed and evaluated over JSON.
//!
//! Consul's list endpoints (`/v1/catalog/*`, `/v1/health/*`, `/v1/agent/services`, ...)
//! take a `filter` query parameter written in HashiCorp's go-bexpr language, e.g.
//! `Service.Tags contains "primary" and Node.Meta.os == linux`. This crate owns that
//! language for fsmhost: the grammar ([`Filter::parse`]), its evaluation against one
//! JSON value shaped like Consul's API output ([`Filter::matches`]), and the filtering
//! of a whole JSON list or map ([`filter_list`], [`try_filter_list`]). It owns nothing
//! else: which endpoints accept a filter, and how the answer is encoded, is the host's.
//!
//! # Grammar (go-bexpr)
//!
//! ```text
//! Input      := _? Or _? EOF
//! Or         := And (_ "or" _ And)*
//! And        := Not (_ "and" _ Not)*
//! Not        := "not" _ Not | "(" _? Or _? ")" | Match
//! Match      := Selector op Value          op: == != contains, not contains, matches, not matches
//!             | Selector "is" ["not"] "empty"
//!             | Value ["not"] "in" Selector
//! Selector   := Ident ("." Ident | "." Digits | "[" _? String _? "]")*
//! Ident      := [a-zA-Z][a-zA-Z0-9_/]*
//! Value      := Selector (its parts joined with ".") | Number | String
//! Number     := "-"? ("0" | [1-9][0-9]*) ("." [0-9]+)?   followed by whitespace, ")" or the end
//! String     := `raw` | "Go-style escapes"
//! ```
//!
//! Precedence is `not` > `and` > `or`; `==` and `!=` need no surrounding spaces, the word
//! operators do.
//!
//! # Semantics
//!
//! As go-bexpr applies them to Consul's structs, with JSON standing in for the struct:
//!
//! * `==` / `!=`: a string field compares as text; a number or boolean field compares
//!   after converting the expression's value to the field's type (Go's `ParseInt` with
//!   base prefixes, `ParseFloat`, `ParseBool`), a value that does not convert being an
//!   evaluation error, as in bexpr.
//! * `in` / `contains`: a string field is searched for a substring, a list for an
//!   element equal to the value (elements the value cannot convert to are skipped), an
//!   object for a key.
//! * `is empty`: an empty string, list or object.
//! * `matches`: the field, a string, searched with the regular expression (unanchored,
//!   as Go's `regexp.Match`); the expression is compiled when the filter is parsed.
//! * A selector that reaches nothing (a missing key, a `null`, an index past the end of a
//!   list, a step into a string or number) takes bexpr's "not present" disposition for a
//!   missing map key: `is empty`, `!=`, `not in`, `not contains` and `not matches` are
//!   true, the others false. bexpr rejects unknown fields of Consul's structs when the
//!   filter is created; a JSON document has no schema, so every missing field is treated
//!   as a missing map key.
//!
//! # Limits
//!
//! A filter comes from an HTTP client: [`MAX_EXPRESSION_LEN`] bounds its length and
//! [`MAX_DEPTH`] the nesting of parentheses and `not`, so parsing and evaluation never
//! recurse deeper than that whatever the input; `and` and `or` chains are kept flat.

#![deny(missing_docs)]

mod eval;
mod parse;

use serde_json::Value;

/// The longest filter expression accepted, in bytes (the host also bounds the URL).
pub const MAX_EXPRESSION_LEN: usize = 8 * 1024;

/// The deepest nesting of parentheses and `not` accepted in an expression.
pub const MAX_DEPTH: usize = 64;

/// An error from parsing or evaluating a filter.
///
/// The parse-time variants display as Consul's answer to a bad `?filter=` (HTTP 400):
/// `Failed to create boolean expression evaluator: <detail>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The expression does not follow the grammar; the detail is
    /// `<line>:<column> (<byte offset>): <what went wrong>`, as bexpr's parser words it.
    #[error("Failed to create boolean expression evaluator: {0}")]
    Syntax(String),
    /// The expression is longer than [`MAX_EXPRESSION_LEN`].
    #[error(
        "Failed to create boolean expression evaluator: expression is {len} bytes, longer than the limit of {max}"
    )]
    TooLong {
        /// The expression's length in bytes.
        len: usize,
        /// The limit, [`MAX_EXPRESSION_LEN`].
        max: usize,
    },
    /// Parentheses and `not` are nested deeper than [`MAX_DEPTH`].
    #[error(
        "Failed to create boolean expression evaluator: expression nested deeper than {max} levels"
    )]
    TooDeep {
        /// The limit, [`MAX_DEPTH`].
        max: usize,
    },
    /// Evaluating the filter against a value failed (bexpr's evaluation errors, e.g. a
    /// value that does not convert to the field's type, or `is empty` on a number).
    #[error("{0}")]
    Evaluate(String),
}

/// A parsed filter expression, ready to be evaluated against many values.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: parse::Expr,
    source: String,
}

impl Filter {
    /// Parses a filter expression (the decoded value of `?filter=`).
    ///
    /// Fails with [`FilterError::Syntax`] for an expression bexpr would reject (including
    /// a `matches` value that is not a valid regular expression), [`FilterError::TooLong`]
    /// or [`FilterError::TooDeep`].
    pub fn parse(expression: &str) -> Result<Filter, FilterError> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(FilterError::TooLong {
                len: expression.len(),
                max: MAX_EXPRESSION_LEN,
            });
        }
        let expr = parse::parse(expression)?;
        Ok(Filter {
            expr,
            source: expression.to_owned(),
        })
    }

    /// The expression this filter was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Evaluates the filter against one value, reporting bexpr's evaluation errors.
    pub fn evaluate(&self, value: &Value) -> Result<bool, FilterError> {
        eval::evaluate(&self.expr, value).map_err(FilterError::Evaluate)
    }

    /// Whether `value` matches the filter; a value whose evaluation fails does not match.
    pub fn matches(&self, value: &Value) -> bool {
        self.evaluate(value).unwrap_or(false)
    }
}

/// Keeps the parts of a list answer that match `filter`.
///
/// A JSON array keeps the elements that match; a JSON object (a map of objects, as
/// `/v1/agent/services` answers) keeps the entries whose value matches; anything else is
/// returned unchanged. An element whose evaluation fails is dropped (see
/// [`try_filter_list`] to report the failure instead, as Consul does).
pub fn filter_list(filter: &Filter, list: Value) -> Value {
    match list {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|item| filter.matches(item))
                .collect(),
        ),
        Value::Object(entries) => Value::Object(
            entries
                .into_iter()
                .filter(|(_, item)| filter.matches(item))
                .collect(),
        ),
        other => other,
    }
}

/// Like [`filter_list`], but the first evaluation error fails the whole list, as a
/// Consul server answers an error rather than a partial list.
pub fn try_filter_list(filter: &Filter, list: Value) -> Result<Value, FilterError> {
    match list {
        Value::Array(items) => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                if filter.evaluate(&item)? {
                    kept.push(item);
                }
            }
            Ok(Value::Array(kept))
        }
        Value::Object(entries) => {
            let mut kept = serde_json::Map::new();
            for (key, item) in entries {
                if filter.evaluate(&item)? {
                    kept.insert(key, item);
                }
            }
            Ok(Value::Object(kept))
        }
        other => Ok(other),
    }
}
