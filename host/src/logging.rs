//! Log output in Consul's shape:
//!
//! ```text
//! 2020-10-17T02:52:24.301Z [INFO]  agent.server.raft: compacting logs: from=1 to=5000
//! ```
//!
//! or, with `log_json`, one JSON object per line with Consul's keys (`@timestamp`,
//! `@level`, `@module`, `@message`, then the event's fields).
//!
//! Owns: the line format and the mapping of library targets into Consul's hierarchy
//! (openraft's events appear under `agent.server.raft`).

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter.
pub struct ConsulFormat {
    /// JSON lines instead of text.
    pub json: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest.push((field.name(), format!("{value:?}")));
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time since the Unix epoch.
pub fn timestamp(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Consul's module name for an event's target.
fn module(target: &str) -> &str {
    if target.starts_with("openraft") {
        "agent.server.raft"
    } else {
        target
    }
}

impl<S, N> FormatEvent<S, N> for ConsulFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let ts = timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let level = level_name(meta.level());
        let mut module = module(meta.target()).to_string();
        // A plugin's lines go under `agent.plugin.<name>` (targets are static in tracing, so
        // the name travels as the `plugin` field).
        if module == "agent.plugin"
            && let Some(at) = fields.rest.iter().position(|(k, _)| *k == "plugin")
        {
            let (_, name) = fields.rest.remove(at);
            module = format!("agent.plugin.{name}");
        }
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("@timestamp".into(), ts.into());
            obj.insert("@level".into(), level.to_ascii_lowercase().into());
            obj.insert("@module".into(), module.clone().into());
            obj.insert("@message".into(), fields.message.into());
            for (k, v) in fields.rest {
                obj.insert(k.into(), v.into());
            }
            return writeln!(writer, "{}", serde_json::Value::Object(obj));
        }
        let mut line = format!("{ts} [{level}] ");
        // Consul pads the level to a fixed width: "[INFO]  agent...".
        for _ in level.len()..5 {
            line.push(' ');
        }
        let _ = write!(line, "{module}: {}", fields.message);
        if !fields.rest.is_empty() {
            line.push(':');
            for (k, v) in &fields.rest {
                let _ = write!(line, " {k}={v}");
            }
        }
        writeln!(writer, "{line}")
    }
}

/// Installs the formatter for `level` (trace, debug, info, warn, err); `FSMHOST_LOG`, in
/// `tracing`'s filter syntax, overrides the level.
pub fn init(level: &str, json: bool) {
    let level = if level == "err" { "error" } else { level };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FSMHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},openraft=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(ConsulFormat { json })
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        assert_eq!(
            timestamp(Duration::from_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        // Consul's documented example line.
        assert_eq!(
            timestamp(Duration::from_millis(1_602_903_144_301)),
            "2020-10-17T02:52:24.301Z"
        );
        assert_eq!(
            timestamp(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn library_targets_map_into_consuls_hierarchy() {
        assert_eq!(module("openraft::core::raft_core"), "agent.server.raft");
        assert_eq!(module("agent.server.fsm"), "agent.server.fsm");
    }
}
