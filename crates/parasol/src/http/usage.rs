//! `GET /v1/usage`: the usage ledger. Every figure is the one accrual
//! function (lifecycle/cost.rs) over the price stored with the instance,
//! never today's catalog, clipped to the window asked for.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use parasol_api::{dollars, AccountUsage, UsageLine, UsageResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::{ok, AppRef};
use crate::error::ApiError;
use crate::lifecycle::cost;
use crate::store::{month_start, next_month_start, Account, InstanceRecord};
use crate::validate;

/// Query of `GET /v1/usage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// RFC 3339; default: the start of this UTC month.
    pub from: Option<String>,
    /// RFC 3339, exclusive; default: the start of next UTC month.
    pub to: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// Admins only: one account's usage instead of every account's.
    pub account_id: Option<String>,
}

/// One instance's line in `from..to`, or `None` if it accrued no time there.
pub fn line(
    rec: &InstanceRecord,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(UsageLine, i64)> {
    let (start, end) = cost::billed_within(rec, from, to, now)?;
    let cents = cost::instance_cents_within(rec, from, to, now);
    let i = &rec.instance;
    Some((
        UsageLine {
            instance_id: i.id,
            account_id: None,
            name: i.name.clone(),
            cloud: i.cloud.clone(),
            region: i.region.clone(),
            shade_instance_type: i.shade_instance_type.clone(),
            rental_type: i.rental_terms.rental_type,
            hourly_price: dollars(i.hourly_price),
            start,
            end,
            cost: dollars(cents),
        },
        cents,
    ))
}

/// `GET /v1/usage`.
pub async fn report(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))?;
    let now = app.clock.now();
    let from = match &q.from {
        Some(f) => validate::rfc3339("from", f)?,
        None => month_start(now),
    };
    let to = match &q.to {
        Some(t) => validate::rfc3339("to", t)?,
        None => next_month_start(now),
    };
    if to <= from {
        return Err(ApiError::invalid_field("to", "to must be later than from"));
    }
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            return Err(ApiError::invalid_field(
                "format",
                format!("format must be json or csv, got {f:?}"),
            ))
        }
    };
    // Whose usage: the caller's; an admin's is every account's unless it
    // names one.
    let scope: Option<Uuid> = match (&q.account_id, account.is_admin) {
        (Some(_), false) => {
            return Err(ApiError::forbidden(
                "account_id needs an admin API key; other keys see their own usage",
            ))
        }
        (Some(a), true) => Some(validate::uuid_field("account_id", a)?),
        (None, true) => None,
        (None, false) => Some(account.id),
    };
    let recs = app
        .store
        .instances_in_window(scope, from.timestamp_millis(), to.timestamp_millis())
        .await?;
    let mut total = 0i64;
    let mut per_account: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut lines = Vec::new();
    for rec in &recs {
        if let Some((mut l, cents)) = line(rec, from, to, now) {
            total += cents;
            *per_account.entry(rec.account_id).or_default() += cents;
            if account.is_admin {
                l.account_id = Some(rec.account_id);
            }
            lines.push(l);
        }
    }
    let accounts = if account.is_admin && scope.is_none() {
        let names: BTreeMap<Uuid, String> = app
            .store
            .list_accounts()
            .await?
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect();
        Some(
            per_account
                .iter()
                .map(|(id, cents)| AccountUsage {
                    account_id: *id,
                    name: names.get(id).cloned().unwrap_or_default(),
                    total: dollars(*cents),
                })
                .collect(),
        )
    } else {
        None
    };
    let body = UsageResponse {
        from,
        to,
        total: dollars(total),
        lines,
        accounts,
    };
    if csv {
        return Ok(csv_response(&body));
    }
    Ok(ok(body))
}

/// The lines as CSV, one header row; the total rides in `x-usage-total` so
/// every row is a line and a spreadsheet's sum of `cost` is the total.
fn csv_response(body: &UsageResponse) -> Response {
    let mut out = String::from(
        "instance_id,account_id,name,cloud,region,shade_instance_type,rental_type,hourly_price,start,end,cost\n",
    );
    for l in &body.lines {
        let cells = [
            l.instance_id.to_string(),
            l.account_id.map(|a| a.to_string()).unwrap_or_default(),
            l.name.clone(),
            l.cloud.clone(),
            l.region.clone(),
            l.shade_instance_type.clone(),
            l.rental_type.as_str().to_string(),
            l.hourly_price.clone(),
            l.start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            l.end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            l.cost.clone(),
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::HeaderName::from_static("x-usage-total"),
                body.total.clone(),
            ),
        ],
        out,
    )
        .into_response()
}

/// Quotes a cell that needs it (RFC 4180); a cell starting with a formula
/// character is prefixed so a spreadsheet shows it as text.
fn csv_cell(c: &str) -> String {
    let c = if c.starts_with(['=', '+', '-', '@']) {
        format!("'{c}")
    } else {
        c.to_string()
    };
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=SUM(A1)"), "'=SUM(A1)");
    }
}
