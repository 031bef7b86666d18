//! Durations in Consul's text form, which is Go's `time.Duration`: `200ms`, `10s`, `1m30s`,
//! `1h0m0s`.
//!
//! Owns: parsing what operators write (config files, query parameters, API bodies) and
//! formatting what the API and the CLI print, so that both read exactly like Consul's.

use std::time::Duration;

/// Parses a duration: one or more `<number><unit>` terms (`ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`; decimals allowed, as in `1.5s`), as Go's `time.ParseDuration`; a bare number is
/// seconds (Consul's config files accept that too). Negative, empty or unit-less
/// compound text is `None`.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return from_secs(secs);
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let n: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = next;
    }
    from_secs(total)
}

fn from_secs(secs: f64) -> Option<Duration> {
    (0.0..1e12)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// Formats a duration as Go's `Duration.String()` does: `0s`, `850µs`, `200ms`, `1.5s`,
/// `10s`, `1m0s`, `1h2m3s`.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", decimal(ns, 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", decimal(ns, 1_000_000, 6));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let rest = ns - u128::from((h * 3600 + m * 60) as u64) * 1_000_000_000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", decimal(rest, 1_000_000_000, 9)));
    out
}

/// `value / unit` with the remainder as decimals (`digits` of them at most), trailing
/// zeros dropped.
fn decimal(value: u128, unit: u128, digits: usize) -> String {
    let (whole, frac) = (value / unit, value % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(12), "12ns"),
            (Duration::from_micros(850), "850µs"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_millis(200), "200ms"),
            (Duration::from_micros(54_653), "54.653ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3723), "1h2m3s"),
        ];
        for (d, text) in cases {
            assert_eq!(format(d), text, "{d:?}");
            assert_eq!(parse(text), Some(d), "{text}");
        }
    }

    #[test]
    fn parses_what_operators_write() {
        assert_eq!(parse("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse(" 5m "), Some(Duration::from_secs(300)));
        assert_eq!(parse("100us"), Some(Duration::from_micros(100)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        for bad in ["", "s", "10x", "-1s", "1s-", "ten seconds", "1e400"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
