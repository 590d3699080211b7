//! `/instances/*`: the catalog, and instances from create to delete.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use parasol_api::{
    dollars, Confirmation, CreateRequest, CreateResponse, Instance, InstanceConfiguration,
    InstanceType, InstanceTypesQuery, RentalTerms, RentalType, Status, UpdateRequest,
};
use uuid::Uuid;

use super::render_cache::Rendered;
use super::{ok, path_id, AppRef, Body};
use crate::error::ApiError;
use crate::lifecycle::placement::Placement;
use crate::lifecycle::{begin_delete, cost};
use crate::providers::catalog::has_room;
use crate::providers::{Offer, RegionOffer};
use crate::store::{Account, InsertOutcome, InstanceRecord, Internal, OfferKey};
use crate::validate;

/// `GET /instances/types`.
pub async fn types(
    State(app): State<AppRef>,
    query: Result<Query<InstanceTypesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))?;
    let num_gpus = q
        .num_gpus
        .as_deref()
        .map(|n| {
            n.trim().parse::<i64>().map_err(|_| {
                ApiError::invalid_field(
                    "num_gpus",
                    format!("num_gpus must be a whole number, got {n:?}"),
                )
            })
        })
        .transpose()?;
    let available = q
        .available
        .as_deref()
        .map(|a| match a {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ApiError::invalid_field(
                "available",
                format!("available must be true or false, got {a:?}"),
            )),
        })
        .transpose()?;
    match q.sort.as_deref() {
        None | Some("price") => {}
        Some(s) => {
            return Err(ApiError::invalid_field(
                "sort",
                format!("sort must be \"price\", got {s:?}"),
            ))
        }
    }
    let all = app.catalog.instance_types(&app.store).await?;
    let key = format!(
        "{:?}",
        (
            &q.cloud,
            &q.region,
            num_gpus,
            &q.gpu_type,
            &q.shade_instance_type,
            available,
            q.sort.is_some()
        )
    );
    let body = rendered_types(&all, key, || {
        // Borrowed where the type goes out whole: cloning the catalog per
        // request was most of this endpoint's cost.
        let mut out: Vec<Cow<'_, InstanceType>> = Vec::new();
        for t in all.iter() {
            if q.cloud.as_deref().is_some_and(|c| c != t.cloud)
                || num_gpus.is_some_and(|n| n != t.configuration.num_gpus)
                || q.gpu_type
                    .as_deref()
                    .is_some_and(|g| !g.eq_ignore_ascii_case(&t.configuration.gpu_type))
                || q.shade_instance_type
                    .as_deref()
                    .is_some_and(|s| s != t.shade_instance_type)
            {
                continue;
            }
            if q.region.is_none() && available.is_none() {
                out.push(Cow::Borrowed(t));
                continue;
            }
            let mut t = t.clone();
            t.availability.retain(|a| {
                q.region.as_deref().is_none_or(|r| r == a.region)
                    && available.is_none_or(|v| v == a.available)
            });
            if !t.availability.is_empty() {
                out.push(Cow::Owned(t));
            }
        }
        if q.sort.is_some() {
            out.sort_by_key(|t| t.hourly_price);
        }
        #[derive(serde::Serialize)]
        struct TypesBody<'a> {
            instance_types: Vec<Cow<'a, InstanceType>>,
        }
        serde_json::to_vec(&TypesBody {
            instance_types: out,
        })
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("rendering instance types: {e}")))
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Rendered `/instances/types` bodies, by filter, of one rendered catalog
/// list (which the catalog replaces at most every second, and after every
/// write that changes availability). Serializing the catalog is what this
/// endpoint spends its time on, and dashboards poll the same few filters.
struct TypesCache {
    list: Option<Arc<Vec<InstanceType>>>,
    bodies: HashMap<String, Bytes>,
}

/// Distinct filters kept per catalog list; more are rendered uncached.
const TYPES_CACHE_MAX: usize = 64;

static TYPES_CACHE: LazyLock<Mutex<TypesCache>> = LazyLock::new(|| {
    Mutex::new(TypesCache {
        list: None,
        bodies: HashMap::new(),
    })
});

/// The body for `key` over `list`, rendered by `render` unless cached. The
/// cache holds the list it was rendered from, so it can only answer for
/// that very list (identity, not equality, is compared).
fn rendered_types(
    list: &Arc<Vec<InstanceType>>,
    key: String,
    render: impl FnOnce() -> Result<Bytes, ApiError>,
) -> Result<Bytes, ApiError> {
    {
        let cache = TYPES_CACHE.lock().expect("poisoned");
        if cache.list.as_ref().is_some_and(|l| Arc::ptr_eq(l, list)) {
            if let Some(b) = cache.bodies.get(&key) {
                return Ok(b.clone());
            }
        }
    }
    let body = render()?;
    let mut cache = TYPES_CACHE.lock().expect("poisoned");
    if !cache.list.as_ref().is_some_and(|l| Arc::ptr_eq(l, list)) {
        cache.list = Some(list.clone());
        cache.bodies.clear();
    }
    if cache.bodies.len() < TYPES_CACHE_MAX {
        cache.bodies.insert(key, body.clone());
    }
    Ok(body)
}

/// `GET /instances`.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let versions = app.store.instance_versions(account.id).await?;
    let mut rendered = app.rendered.get_all(&versions);
    let missing: Vec<Uuid> = versions
        .iter()
        .zip(&rendered)
        .filter(|(_, r)| r.is_none())
        .map(|((id, _), _)| *id)
        .collect();
    if !missing.is_empty() {
        let mut fresh = HashMap::with_capacity(missing.len());
        // A cold cache (first list, or after a restart) reads the account
        // in one scan rather than by id.
        let recs = if missing.len() * 2 > versions.len() {
            app.store.list_instances(account.id).await?
        } else {
            app.store.instances_by_ids(account.id, &missing).await?
        };
        for rec in recs {
            if rec.instance.status == Status::Deleted {
                app.rendered.forget(&rec.instance.id);
                continue;
            }
            let r = Arc::new(Rendered::new(&rec));
            app.rendered.put(rec.instance.id, r.clone());
            fresh.insert(rec.instance.id, r);
        }
        for ((id, _), slot) in versions.iter().zip(rendered.iter_mut()) {
            if slot.is_none() {
                // Written again since the versions were read: the newer
                // rendering. Gone meanwhile: left out.
                *slot = fresh.get(id).cloned();
            }
        }
    }
    let mut body = Vec::with_capacity(64 + rendered.len() * 1024);
    body.extend_from_slice(b"{\"instances\":[");
    for (n, r) in rendered.iter().flatten().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        r.write(&mut body, now);
    }
    body.extend_from_slice(b"]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One page of an account's live instances, newest first, rendered as the
/// API renders them (cost as of now), and how many there are in all. Reads
/// the ids of all (one aggregated row) but decodes only the page's rows, so
/// a page costs the same with 10 instances or 10,000.
pub async fn newest_page(
    app: &AppRef,
    account: &Account,
    skip: usize,
    take: usize,
) -> Result<(Vec<Instance>, usize), ApiError> {
    let now = app.clock.now();
    let versions = app.store.instance_versions(account.id).await?;
    let total = versions.len();
    let ids: Vec<Uuid> = versions
        .iter()
        .rev()
        .skip(skip)
        .take(take)
        .map(|(id, _)| *id)
        .collect();
    if ids.is_empty() {
        return Ok((Vec::new(), total));
    }
    let mut recs: HashMap<Uuid, InstanceRecord> = app
        .store
        .instances_by_ids(account.id, &ids)
        .await?
        .into_iter()
        .map(|r| (r.instance.id, r))
        .collect();
    let page = ids
        .iter()
        .filter_map(|id| recs.remove(id))
        // Deleted since the ids were read: gone from the list.
        .filter(|r| r.instance.status != Status::Deleted)
        .map(|r| render(&r, now))
        .collect();
    Ok((page, total))
}

/// `GET /instances/{id}/info`.
pub async fn info(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = load(&app, &account, &id).await?;
    Ok(ok(render(&rec, app.clock.now())))
}

/// The API view of a stored instance, with its cost as of `now`.
pub fn render(rec: &InstanceRecord, now: chrono::DateTime<chrono::Utc>) -> Instance {
    let mut i = rec.instance.clone();
    i.cost_estimate = dollars(cost::instance_cents(rec, now));
    i
}

pub(crate) async fn load(
    app: &AppRef,
    account: &Account,
    raw_id: &str,
) -> Result<InstanceRecord, ApiError> {
    let id = path_id(raw_id, "instance")?;
    app.store
        .get_instance(account.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance"))
}

/// `POST /instances/create`.
pub async fn create(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<CreateRequest>,
) -> Result<Response, ApiError> {
    let id = create_instance(&app, &account, req, None).await?;
    // The provider assigns its id later; until then it is empty.
    Ok(ok(CreateResponse {
        id,
        cloud_assigned_id: String::new(),
    }))
}

/// Validates and stores one new instance on the offer `req` names, as
/// `/instances/create` and the launches by requirements do. An instance
/// with a `placement` may move to other offers later; one admitted to wait
/// for capacity is stored whether or not its offer has room now.
pub async fn create_instance(
    app: &AppRef,
    account: &Account,
    mut req: CreateRequest,
    placement: Option<Placement>,
) -> Result<Uuid, ApiError> {
    validate::name("name", &req.name)?;
    let offer = find_offer(app, &req.cloud, &req.shade_instance_type)?;
    let region = find_region(&offer, &req.region)?;
    super::templates::apply_to_create(app, account, &mut req).await?;
    let volumes = super::volumes::volumes_for_instance(
        app,
        account,
        req.volume_ids.as_deref().unwrap_or_default(),
        &offer.cloud,
        &region.region,
    )
    .await?;
    let rental_type = req.rental_type.unwrap_or_default();
    let hourly_price = match rental_type {
        RentalType::OnDemand => offer.hourly_price,
        RentalType::Spot => {
            if !req.shade_cloud {
                return Err(ApiError::invalid_field(
                    "rental_type",
                    "spot instances require shade_cloud: true",
                ));
            }
            region.spot_price.ok_or_else(|| {
                ApiError::invalid_field(
                    "rental_type",
                    format!(
                        "{} is not offered as spot in {}",
                        offer.shade_instance_type, region.region
                    ),
                )
            })?
        }
        RentalType::Commitment => {
            return Err(ApiError::invalid_field(
                "rental_type",
                "rental_type must be on_demand or spot",
            ))
        }
    };
    validate::create_fields(&req)?;
    let idle_policy = super::health::bind_idle_policy(app, account, req.idle_policy.take()).await?;
    let mut rec = new_instance(
        app,
        account,
        NewInstance {
            name: req.name.clone(),
            offer: &offer,
            region,
            os: req.os.clone(),
            ssh_key_id: req.ssh_key_id.clone(),
            now: app.clock.now(),
        },
    )
    .await?;
    let full = || {
        ApiError::no_capacity(format!(
            "{} has no {} capacity left in {}; see /instances/types for regions with availability",
            offer.cloud, offer.shade_instance_type, region.region
        ))
    };
    let waiting = placement.as_ref().is_some_and(|p| p.waiting);
    if !waiting && !has_room(region.capacity, 0) {
        return Err(full());
    }
    let i = &mut rec.instance;
    i.shade_cloud = req.shade_cloud;
    i.hourly_price = hourly_price;
    i.rental_terms = RentalTerms {
        rental_type,
        hourly_price: Some(dollars(hourly_price)),
        ending_at: None,
    };
    i.volume_ids = req.volume_ids.clone().unwrap_or_default();
    i.launch_configuration = req.launch_configuration.clone();
    i.auto_delete = req.auto_delete.clone();
    i.alert = req.alert.clone();
    i.volume_mount = req.volume_mount.clone();
    i.tags = req.tags.clone().unwrap_or_default();
    i.envs = req.envs.clone().unwrap_or_default();
    i.template_id = req.template_id.clone().filter(|t| !t.trim().is_empty());
    i.idle_policy = idle_policy;
    i.on_unhealthy = req.on_unhealthy;
    let id = i.id;
    if waiting {
        i.status_details = Some("waiting for capacity".into());
    }
    rec.internal.placement = placement;
    let slots = region.capacity.slots().filter(|_| !waiting);
    match app
        .store
        .insert_instance_with_volumes(&rec, &volumes, slots)
        .await?
    {
        InsertOutcome::Stored => {}
        InsertOutcome::NoCapacity => return Err(full()),
        InsertOutcome::BudgetExceeded(why) => return Err(ApiError::budget_exceeded(why)),
        InsertOutcome::VolumeInUse => {
            return Err(ApiError::conflict(
                "the volume is already mounted by another live instance and does not support multi-mount",
            )
            .with_field("volume_ids"))
        }
    }
    app.catalog.invalidate();
    app.notify.notify_one();
    tracing::info!(instance = %id, account = %account.id, cloud = %rec.instance.cloud,
        region = %rec.instance.region, shade_instance_type = %rec.instance.shade_instance_type, "instance created");
    Ok(id)
}

/// What every new instance needs, whether created alone or as a node.
pub struct NewInstance<'a> {
    pub name: String,
    pub offer: &'a Offer,
    pub region: &'a RegionOffer,
    /// Default: the type's first OS option.
    pub os: Option<String>,
    /// Default: the account's default key, if it has one.
    pub ssh_key_id: Option<String>,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Builds a `creating` on-demand instance record, validating the OS and the
/// SSH key; the caller adds the request's optional settings.
pub async fn new_instance(
    app: &AppRef,
    account: &Account,
    n: NewInstance<'_>,
) -> Result<InstanceRecord, ApiError> {
    let offer = n.offer;
    let c = &offer.configuration;
    let os = match &n.os {
        None => c.os_options.first().cloned().ok_or_else(|| {
            ApiError::invalid_field("os", "this instance type lists no operating system")
        })?,
        Some(os) if c.os_options.contains(os) => os.clone(),
        Some(os) => {
            return Err(ApiError::invalid_field(
                "os",
                format!(
                    "os {os:?} is not offered for {}; choose one of: {}",
                    offer.shade_instance_type,
                    c.os_options.join(", ")
                ),
            ))
        }
    };
    let key = match n.ssh_key_id.as_deref() {
        Some(raw) => {
            let id = validate::uuid_field("ssh_key_id", raw)?;
            Some(
                app.store
                    .get_ssh_key(account.id, id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::invalid_field("ssh_key_id", format!("no ssh key with id {id}"))
                    })?,
            )
        }
        None => app.store.default_ssh_key(account.id).await?,
    };
    Ok(InstanceRecord {
        account_id: account.id,
        cluster_id: None,
        generation: 1,
        wake_at: Some(n.now.timestamp_millis()),
        stored_status: Status::Creating,
        stored_offer: OfferKey {
            cloud: offer.cloud.clone(),
            region: n.region.region.clone(),
            shade_instance_type: offer.shade_instance_type.clone(),
        },
        stored_charge: crate::store::Charge {
            gpus: c.num_gpus,
            cents: offer.hourly_price,
        },
        instance: Instance {
            id: Uuid::new_v4(),
            cloud: offer.cloud.clone(),
            region: n.region.region.clone(),
            shade_instance_type: offer.shade_instance_type.clone(),
            cloud_instance_type: offer.cloud_instance_type.clone(),
            cloud_assigned_id: String::new(),
            shade_cloud: true,
            name: n.name,
            configuration: InstanceConfiguration::of_type(c, os.clone()),
            os,
            ip: None,
            ssh_user: offer.ssh_user.clone(),
            ssh_port: offer.ssh_port,
            status: Status::Creating,
            status_details: None,
            cost_estimate: dollars(0),
            hourly_price: offer.hourly_price,
            rental_terms: RentalTerms {
                rental_type: RentalType::OnDemand,
                hourly_price: Some(dollars(offer.hourly_price)),
                ending_at: None,
            },
            volume_ids: Vec::new(),
            ssh_key_id: key.as_ref().map(|k| k.id),
            launch_configuration: None,
            auto_delete: None,
            alert: None,
            volume_mount: None,
            tags: Vec::new(),
            envs: Vec::new(),
            port_mappings: Vec::new(),
            active_at: None,
            created_at: n.now,
            deleted_at: None,
            boot_time: offer.boot_time,
            template_id: None,
            idle_policy: None,
            on_unhealthy: None,
        },
        internal: Internal {
            ssh_public_key: key.map(|k| k.public_key),
            ..Internal::default()
        },
    })
}

fn find_offer(app: &AppRef, cloud: &str, shade_instance_type: &str) -> Result<Offer, ApiError> {
    let offers = app.catalog.offers();
    let clouds: BTreeSet<&str> = offers.iter().map(|o| o.cloud.as_str()).collect();
    if !clouds.contains(cloud) {
        return Err(ApiError::invalid_field(
            "cloud",
            format!(
                "unknown cloud {cloud:?}; known clouds: {}",
                clouds.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    app.catalog.find(cloud, shade_instance_type).ok_or_else(|| {
        ApiError::invalid_field(
            "shade_instance_type",
            format!("{cloud} has no instance type {shade_instance_type:?}; see /instances/types?cloud={cloud}"),
        )
    })
}

fn find_region<'a>(offer: &'a Offer, region: &str) -> Result<&'a RegionOffer, ApiError> {
    offer
        .regions
        .iter()
        .find(|r| r.region == region)
        .ok_or_else(|| {
            let regions: Vec<&str> = offer.regions.iter().map(|r| r.region.as_str()).collect();
            ApiError::invalid_field(
                "region",
                format!(
                    "{} is not available in region {region:?} of {}; it is available in: {}",
                    offer.shade_instance_type,
                    offer.cloud,
                    regions.join(", ")
                ),
            )
        })
}

/// Applies a change with a generation-checked write, re-reading and
/// re-applying when another writer got there first.
async fn modify<F>(
    app: &AppRef,
    account: &Account,
    raw_id: &str,
    mut change: F,
) -> Result<InstanceRecord, ApiError>
where
    F: FnMut(&mut InstanceRecord) -> Result<bool, ApiError>,
{
    for _ in 0..16 {
        let mut rec = load(app, account, raw_id).await?;
        if !change(&mut rec)? {
            return Ok(rec);
        }
        if app
            .store
            .update_instance(&mut rec, app.clock.now_ms())
            .await?
        {
            app.notify.notify_one();
            return Ok(rec);
        }
    }
    Err(ApiError::conflict(
        "the instance is changing too quickly; retry the request",
    ))
}

/// `POST /instances/{id}/update`.
pub async fn update(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    Body(req): Body<UpdateRequest>,
) -> Result<Response, ApiError> {
    match &req.name {
        Some(Some(n)) => validate::name("name", n)?,
        Some(None) => {
            return Err(ApiError::invalid_field(
                "name",
                "name cannot be removed, only changed",
            ))
        }
        None => {}
    }
    if let Some(Some(t)) = &req.tags {
        validate::tags("tags", t)?;
    }
    if let Some(Some(t)) = &req.auto_delete {
        validate::thresholds("auto_delete", t)?;
    }
    if let Some(Some(t)) = &req.alert {
        validate::thresholds("alert", t)?;
    }
    let now = app.clock.now_ms();
    let rec = modify(&app, &account, &id, |rec| {
        let i = &mut rec.instance;
        if let Some(Some(n)) = &req.name {
            i.name = n.clone();
        }
        if let Some(t) = &req.tags {
            i.tags = t.clone().unwrap_or_default();
        }
        if let Some(a) = &req.auto_delete {
            i.auto_delete = a.clone();
        }
        if let Some(a) = &req.alert {
            i.alert = a.clone();
            // New thresholds fire afresh.
            rec.internal.alerts_fired.clear();
        }
        // Thresholds may now be due: let the reconciler look.
        if i.status == Status::Active {
            rec.wake_at = Some(now);
        }
        Ok(true)
    })
    .await?;
    Ok(ok(Confirmation {
        id: rec.instance.id,
        status: rec.instance.status.to_string(),
    }))
}

/// `POST /instances/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let rec = modify(&app, &account, &id, |rec| {
        if rec.cluster_id.is_some() {
            return Err(ApiError::conflict(
                "this instance is a node of a cluster; delete the cluster instead",
            ));
        }
        if rec.instance.status == Status::Deleting {
            return Ok(false);
        }
        let details = rec
            .instance
            .status_details
            .take()
            .filter(|_| rec.instance.status == Status::Error);
        begin_delete(rec, now, details);
        Ok(true)
    })
    .await?;
    app.catalog.invalidate();
    tracing::info!(instance = %rec.instance.id, "delete requested");
    Ok(ok(Confirmation {
        id: rec.instance.id,
        status: rec.instance.status.to_string(),
    }))
}

/// `POST /instances/{id}/restart`.
pub async fn restart(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = app.clock.now_ms();
    let rec = modify(&app, &account, &id, |rec| {
        if rec.instance.status != Status::Active {
            return Err(ApiError::conflict(format!(
                "only an active instance can be restarted; this one is {}",
                rec.instance.status
            )));
        }
        rec.internal.restart_requested = true;
        rec.wake_at = Some(now);
        Ok(true)
    })
    .await?;
    Ok(ok(Confirmation {
        id: rec.instance.id,
        status: rec.instance.status.to_string(),
    }))
}
