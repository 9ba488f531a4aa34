//! `cachepot --explain`: why each miss of the current statistics period
//! missed, as text or JSON.

use anyhow::{bail, Result};
use cachepot_daemon::explain::Explained;
use cachepot_daemon::protocol::{Request, Response};

use crate::cli::Format;
use crate::client;
use crate::config::Config;
use crate::runtime::Paths;

/// Longest value shown in text; longer ones are cut.
const SHOWN: usize = 120;

/// Asks the daemon for the explained misses and prints them.
pub fn run(format: Format) -> Result<i32> {
    let paths = Paths::new(&Config::load()?)?;
    let mut conn = client::connect_or_start(&paths)?;
    let Response::Explain(list) = conn.call(&Request::Explain)? else {
        bail!("unexpected answer to an explain request");
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Format::Text => print!("{}", render(&list)),
    }
    Ok(0)
}

fn short(v: &Option<String>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) if v.chars().count() > SHOWN => {
            format!("{}…", v.chars().take(SHOWN).collect::<String>())
        }
        Some(v) => v.clone(),
    }
}

fn render(list: &[Explained]) -> String {
    if list.is_empty() {
        return "No misses since the statistics were reset.\n".into();
    }
    let mut out = String::new();
    for e in list {
        out.push_str(&format!("miss: {} ({})\n", e.unit, e.language));
        if !e.stored_before {
            out.push_str("  nothing stored for this unit yet\n");
        } else if e.differences.is_empty() {
            out.push_str(
                "  the same inputs as a stored compile (its entry was evicted, unreadable, or stored after this lookup)\n",
            );
        }
        for d in &e.differences {
            out.push_str(&format!(
                "  {}: {} -> {}\n",
                d.input,
                short(&d.stored),
                short(&d.now)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachepot_daemon::explain::Difference;

    #[test]
    fn differences_are_listed_under_their_unit() {
        let text = render(&[Explained {
            unit: "rust util lib src/lib.rs".into(),
            language: "rust".into(),
            stored_before: true,
            differences: vec![Difference {
                input: "env:CARGO_PKG_VERSION".into(),
                stored: Some("0.1.0".into()),
                now: Some("0.2.0".into()),
            }],
        }]);
        assert!(
            text.contains("miss: rust util lib src/lib.rs (rust)"),
            "{text}"
        );
        assert!(
            text.contains("env:CARGO_PKG_VERSION: 0.1.0 -> 0.2.0"),
            "{text}"
        );
        assert!(render(&[]).contains("No misses"));
    }
}
