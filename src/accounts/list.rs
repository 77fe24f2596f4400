//! `ccr accounts list`: every account of the config, asked upstream in parallel.

use super::args::ListArgs;
use super::usage;
use super::{AccountsError, runtime};
use crate::config::{self, expand_tilde};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One account's row.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub id: String,
    pub name: String,
    pub token_path: String,
    pub tier: Option<String>,
    pub used: Option<f64>,
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    pub reset_at: Option<DateTime<Utc>>,
    pub token_expires_at: Option<DateTime<Utc>>,
    /// `ok`, or `error`.
    pub state: &'static str,
    /// Why the state is `error`.
    pub error: Option<String>,
}

pub fn run(args: &ListArgs) -> Result<String, AccountsError> {
    let source = config::locate(args.config.config.as_deref());
    let (cfg, _) = config::load(&source).map_err(|e| {
        AccountsError::refused(format!("cannot read the config: {}", e.problems().join("; ")))
    })?;
    let http = super::http();
    let rt = runtime()?;
    let rows: Vec<Row> = rt.block_on(async {
        let checks = cfg.providers.iter().map(|(id, p)| {
            let http = http.clone();
            async move {
                let result = usage::check(p, &http).await;
                let mut row = Row {
                    id: id.clone(),
                    name: p.name.clone().unwrap_or_else(|| id.clone()),
                    token_path: expand_tilde(&p.token_path).display().to_string(),
                    tier: None,
                    used: None,
                    limit: None,
                    remaining: None,
                    reset_at: None,
                    token_expires_at: None,
                    state: "ok",
                    error: None,
                };
                match result {
                    Ok(c) => {
                        row.tier = c.usage.tier.clone();
                        row.used = Some(c.usage.used);
                        row.limit = Some(c.usage.limit);
                        row.remaining = Some(c.usage.remaining());
                        row.reset_at = c.usage.reset_at;
                        row.token_expires_at = c.expires_at;
                    }
                    Err(e) => {
                        row.state = "error";
                        row.error = Some(e);
                    }
                }
                row
            }
        });
        futures_util::future::join_all(checks).await
    });
    if args.json {
        return serde_json::to_string_pretty(&rows).map_err(|e| AccountsError::refused(e.to_string()));
    }
    eprintln!("{}", source.notice());
    Ok(table(&rows))
}

/// The rows as an aligned table; errors follow on their own lines.
pub fn table(rows: &[Row]) -> String {
    let header = ["ID", "NAME", "TIER", "CREDITS", "LEFT", "RESET", "TOKEN EXPIRES", "STATE"];
    let dash = || "-".to_owned();
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.name.clone(),
                r.tier.clone().unwrap_or_else(dash),
                match (r.used, r.limit) {
                    (Some(u), Some(l)) => format!("{}/{}", usage::number(u), usage::number(l)),
                    _ => dash(),
                },
                r.remaining.map(usage::number).unwrap_or_else(dash),
                r.reset_at.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_else(dash),
                r.token_expires_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(dash),
                r.state.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&header.map(str::to_owned));
    for row in &cells {
        out.push('\n');
        out.push_str(&line(row));
    }
    for r in rows {
        if let Some(e) = &r.error {
            out.push_str(&format!("\n{}: {e}", r.id));
        }
    }
    out
}
