//! `/v1/admin/accounts/*`: accounts and their budgets, for admin keys only.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use parasol_api::{
    dollars, AdminAccount, AdminAccountsResponse, Budget, Confirmation, CreateAccountRequest,
    CreateAccountResponse, UpdateAccountRequest,
};

use super::{ok, path_id, AppRef, Body};
use crate::error::ApiError;
use crate::store::{Account, DeleteAccountOutcome, Limits};
use crate::validate;

fn require_admin(account: &Account) -> Result<(), ApiError> {
    if account.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("this endpoint needs an admin API key"))
    }
}

/// Checks a budget and converts its limits to the counters' units; each
/// bad value is refused naming its field.
pub fn budget_limits(b: &Budget) -> Result<Limits, ApiError> {
    let money = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| validate::dollars_to_cents(&format!("budget.{field}"), s))
            .transpose()
    };
    let monthly = money("monthly_limit", &b.monthly_limit)?;
    let hourly = money("max_hourly_spend", &b.max_hourly_spend)?;
    if let Some(g) = b.max_gpus.filter(|g| *g < 0) {
        return Err(ApiError::invalid_field(
            "budget.max_gpus",
            format!("budget.max_gpus must not be negative, got {g}"),
        ));
    }
    if let Some(p) = b.alert_at_percent.filter(|p| !(1..=100).contains(p)) {
        return Err(ApiError::invalid_field(
            "budget.alert_at_percent",
            format!("budget.alert_at_percent must be between 1 and 100, got {p}"),
        ));
    }
    if b.alert_at_percent.is_some() && monthly.is_none() {
        return Err(ApiError::invalid_field(
            "budget.alert_at_percent",
            "budget.alert_at_percent is a percentage of budget.monthly_limit, which is not set",
        ));
    }
    Ok(Limits {
        monthly_limit_cents: monthly,
        max_hourly_cents: hourly,
        max_gpus: b.max_gpus,
    })
}

/// `GET /v1/admin/accounts`.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    require_admin(&account)?;
    let now = app.clock.now();
    let mut accounts = Vec::new();
    for a in app.store.list_accounts().await? {
        let spent = app.store.month_to_date_cents(a.id, now).await?;
        let idle_policy = app.store.account_idle_policy(a.id).await?;
        accounts.push(AdminAccount {
            id: a.id,
            name: a.name,
            admin: a.is_admin,
            budget: a.budget,
            month_to_date_spend: dollars(spent),
            live_instances: a.live_instances,
            hourly_spend: dollars(a.live.cents),
            idle_policy,
        });
    }
    Ok(ok(AdminAccountsResponse { accounts }))
}

/// `POST /v1/admin/accounts/create`: the key is in this answer only.
pub async fn create(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<CreateAccountRequest>,
) -> Result<Response, ApiError> {
    require_admin(&account)?;
    validate::name("name", &req.name)?;
    let key = super::new_api_key();
    let created = app
        .store
        .create_account(
            req.name.trim(),
            &super::hash_key(&key),
            req.admin,
            false,
            app.clock.now_ms(),
        )
        .await?;
    tracing::info!(account = %created.id, by = %account.id, admin = req.admin, "account created");
    Ok(ok(CreateAccountResponse {
        id: created.id,
        api_key: key,
    }))
}

/// `POST /v1/admin/accounts/{id}/update`.
pub async fn update(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    Body(req): Body<UpdateAccountRequest>,
) -> Result<Response, ApiError> {
    require_admin(&account)?;
    let id = path_id(&id, "account")?;
    if let Some(name) = &req.name {
        validate::name("name", name)?;
    }
    let budget = match &req.budget {
        None => None,
        Some(None) => Some(None),
        Some(Some(b)) => Some(Some((b, budget_limits(b)?))),
    };
    if let Some(Some(p)) = &req.idle_policy {
        super::health::check_policy("idle_policy", p)?;
    }
    if !app
        .store
        .update_account(
            id,
            req.name.as_deref().map(str::trim),
            budget,
            app.clock.now_ms(),
        )
        .await?
    {
        return Err(ApiError::not_found("account"));
    }
    if let Some(p) = &req.idle_policy {
        app.store.set_account_idle_policy(id, p.as_ref()).await?;
        // Instances already running are bound from their next step on.
        app.notify.notify_one();
    }
    // Cached accounts carry the name; the budget is read from the store.
    app.keys.forget_account(id);
    let found = app
        .store
        .list_accounts()
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| ApiError::not_found("account"))?;
    let spent = app.store.month_to_date_cents(id, app.clock.now()).await?;
    Ok(ok(AdminAccount {
        id,
        name: found.name,
        admin: found.is_admin,
        budget: found.budget,
        month_to_date_spend: dollars(spent),
        live_instances: found.live_instances,
        hourly_spend: dollars(found.live.cents),
        idle_policy: app.store.account_idle_policy(id).await?,
    }))
}

/// `POST /v1/admin/accounts/{id}/delete`: refused while the account holds
/// live instances or volumes.
pub async fn delete(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&account)?;
    let id = path_id(&id, "account")?;
    if id == account.id {
        return Err(ApiError::conflict(
            "an admin cannot delete the account its own key belongs to",
        ));
    }
    match app.store.delete_account(id).await? {
        DeleteAccountOutcome::Deleted => {}
        DeleteAccountOutcome::NotFound => return Err(ApiError::not_found("account")),
        DeleteAccountOutcome::Busy(why) => return Err(ApiError::conflict(why)),
    }
    app.keys.forget_account(id);
    tracing::info!(account = %id, by = %account.id, "account deleted");
    Ok(ok(Confirmation {
        id,
        status: "deleted".into(),
    }))
}
