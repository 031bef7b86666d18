//! Evaluation of a parsed expression against a JSON value, as go-bexpr's `evaluate.go`
//! applies it to a Go value.

use serde_json::Value;

use crate::parse::{Expr, Match, MatchValue, Op};

/// Evaluates `expr` against `datum`; `Err` carries bexpr's evaluation error text.
///
/// Recursion is bounded by the parser's nesting bound: `and` and `or` are flat lists.
pub(crate) fn evaluate(expr: &Expr, datum: &Value) -> Result<bool, String> {
    match expr {
        Expr::Or(items) => {
            for item in items {
                if evaluate(item, datum)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::And(items) => {
            for item in items {
                if !evaluate(item, datum)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Not(inner) => Ok(!evaluate(inner, datum)?),
        Expr::Match(m) => evaluate_match(m, datum),
    }
}

/// Follows a selector's path: object keys, or list indexes written as digits.
/// `None` where the path reaches nothing, or `null`.
fn lookup<'v>(datum: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut current = datum;
    for part in path {
        current = match current {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!current.is_null()).then_some(current)
}

/// bexpr's `NotPresentDisposition`: the answer for a selector that reaches nothing.
fn not_present(op: &Op) -> bool {
    match op {
        Op::Equal(_) | Op::In(_) | Op::IsNotEmpty | Op::Matches(_) => false,
        Op::NotEqual(_) | Op::NotIn(_) | Op::IsEmpty | Op::NotMatches(_) => true,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn evaluate_match(m: &Match, datum: &Value) -> Result<bool, String> {
    let Some(value) = lookup(datum, &m.selector) else {
        return Ok(not_present(&m.op));
    };
    let selector = || m.selector.join(".");
    match &m.op {
        Op::Equal(v) => equal(v, value),
        Op::NotEqual(v) => equal(v, value).map(|eq| !eq),
        Op::In(v) => contains(v, value, &selector),
        Op::NotIn(v) => contains(v, value, &selector).map(|c| !c),
        Op::IsEmpty => is_empty(value, &selector),
        Op::IsNotEmpty => is_empty(value, &selector).map(|e| !e),
        Op::Matches(re) => match value {
            Value::String(s) => Ok(re.is_match(s)),
            other => Err(format!(
                "value of type {} is not convertible to []byte",
                kind(other)
            )),
        },
        Op::NotMatches(re) => match value {
            Value::String(s) => Ok(!re.is_match(s)),
            other => Err(format!(
                "value of type {} is not convertible to []byte",
                kind(other)
            )),
        },
    }
}

/// Equality of a primitive field with the value converted to the field's type;
/// `Ok(None)` when the value does not convert (Go's `strconv.ErrSyntax`/`ErrRange`).
fn primitive_equal(v: &MatchValue, field: &Value) -> Option<Result<bool, ()>> {
    match field {
        Value::String(s) => Some(Ok(v.raw == *s)),
        Value::Bool(b) => Some(v.bool.map(|x| x == *b).ok_or(())),
        Value::Number(n) => Some(if let Some(i) = n.as_i64() {
            v.int.map(|x| x == i).ok_or(())
        } else if let Some(u) = n.as_u64() {
            v.uint.map(|x| x == u).ok_or(())
        } else {
            // JSON numbers that are neither i64 nor u64 are floats.
            match (v.float, n.as_f64()) {
                (Some(x), Some(f)) => Ok(x == f),
                _ => Err(()),
            }
        }),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn equal(v: &MatchValue, field: &Value) -> Result<bool, String> {
    match primitive_equal(v, field) {
        Some(Ok(eq)) => Ok(eq),
        Some(Err(())) => Err(format!(
            "error getting match value in expression: cannot convert {:?} to {}",
            v.raw,
            kind(field)
        )),
        None => {
            Err("unable to find suitable primitive comparison function for matching".to_owned())
        }
    }
}

fn contains(v: &MatchValue, field: &Value, selector: &dyn Fn() -> String) -> Result<bool, String> {
    match field {
        Value::String(s) => Ok(s.contains(v.raw.as_str())),
        Value::Object(map) => Ok(map.contains_key(&v.raw)),
        Value::Array(items) => {
            for item in items {
                match primitive_equal(v, item) {
                    Some(Ok(true)) => return Ok(true),
                    // An element the value does not convert to is skipped, as bexpr
                    // does for a []interface{}; so is a null element.
                    Some(Ok(false) | Err(())) => {}
                    None if item.is_null() => {}
                    None => {
                        return Err(format!(
                            "unable to find suitable primitive comparison function for \"in\" comparison in interface slice: {}",
                            kind(item)
                        ));
                    }
                }
            }
            Ok(false)
        }
        other => Err(format!(
            "cannot perform in/contains operations on type {} for selector: {:?}",
            kind(other),
            selector()
        )),
    }
}

fn is_empty(field: &Value, selector: &dyn Fn() -> String) -> Result<bool, String> {
    match field {
        Value::String(s) => Ok(s.is_empty()),
        Value::Array(items) => Ok(items.is_empty()),
        Value::Object(map) => Ok(map.is_empty()),
        other => Err(format!(
            "cannot perform is-empty operations on type {} for selector: {:?}",
            kind(other),
            selector()
        )),
    }
}
