//! `/volumes/*`: storage volumes, and the rules for mounting them.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use parasol_api::{
    dollars, Confirmation, CreateVolumeRequest, CreateVolumeResponse, Volume, VolumeType,
    VolumesResponse, VolumesTypesResponse,
};
use uuid::Uuid;

use super::{ok, path_id, AppRef, Body};
use crate::error::ApiError;
use crate::lifecycle::cost;
use crate::store::{Account, DeleteVolumeOutcome, VolumeRecord, VolumeStatus};
use crate::validate;

/// `GET /volumes/types`.
pub async fn types(State(app): State<AppRef>) -> Response {
    let volume_types = app
        .catalog
        .volume_offers()
        .iter()
        .map(|v| VolumeType {
            cloud: v.cloud.clone(),
            region: v.region.clone(),
            supports_multi_mount: v.supports_multi_mount,
            fixed_size: v.fixed_size,
            price_per_gb_per_hour: micros_to_dollars(v.price_micros_per_gb_hour),
        })
        .collect();
    ok(VolumesTypesResponse { volume_types })
}

/// Millionths of a dollar as a dollar string with six decimals.
fn micros_to_dollars(micros: i64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// `GET /volumes`.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let now = app.clock.now_ms();
    let volumes = app
        .store
        .list_volumes(account.id)
        .await?
        .iter()
        .map(|v| render(v, now))
        .collect();
    Ok(ok(VolumesResponse { volumes }))
}

/// `GET /volumes/{id}/info`.
pub async fn info(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "volume")?;
    let v = app
        .store
        .get_volume(account.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("volume"))?;
    Ok(ok(render(&v, app.clock.now_ms())))
}

/// The API view of a stored volume, with its cost as of `now_ms`.
pub(crate) fn render(v: &VolumeRecord, now_ms: i64) -> Volume {
    Volume {
        id: v.id,
        cloud: v.cloud.clone(),
        cloud_assigned_id: v.cloud_assigned_id.clone().unwrap_or_default(),
        region: v.region.clone(),
        name: v.name.clone(),
        fixed_size: v.fixed_size,
        size_in_gb: v.size_in_gb,
        // A volume its cloud refused never existed there, so never cost.
        cost_estimate: dollars(if v.status == VolumeStatus::Error {
            0
        } else {
            cost::volume_cents(v.size_in_gb, v.price_micros, v.created_at, now_ms)
        }),
        supports_multi_mount: v.multi_mount,
        mounted_by: v
            .mounted_by
            .first()
            .map(Uuid::to_string)
            .unwrap_or_default(),
        status: Some(v.status.as_str().to_string()),
        status_details: v.status_details.clone(),
    }
}

/// `POST /volumes/create`.
pub async fn create(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<CreateVolumeRequest>,
) -> Result<Response, ApiError> {
    validate::name("name", &req.name)?;
    let offers = app.catalog.volume_offers();
    let of_cloud: Vec<_> = offers.iter().filter(|o| o.cloud == req.cloud).collect();
    if of_cloud.is_empty() {
        let mut clouds: Vec<&str> = offers.iter().map(|o| o.cloud.as_str()).collect();
        clouds.dedup();
        return Err(ApiError::invalid_field(
            "cloud",
            format!(
                "cloud {:?} offers no volumes; volumes are offered by: {}",
                req.cloud,
                clouds.join(", ")
            ),
        ));
    }
    let Some(offer) = of_cloud.iter().find(|o| o.region == req.region) else {
        let regions: Vec<&str> = of_cloud.iter().map(|o| o.region.as_str()).collect();
        return Err(ApiError::invalid_field(
            "region",
            format!(
                "{} offers no volumes in region {:?}; it does in: {}",
                req.cloud,
                req.region,
                regions.join(", ")
            ),
        ));
    };
    if req.size_in_gb < offer.min_size_gb || req.size_in_gb > offer.max_size_gb {
        return Err(ApiError::invalid_field(
            "size_in_gb",
            format!(
                "size_in_gb must be from {} to {} for {} volumes in {}, got {}",
                offer.min_size_gb, offer.max_size_gb, req.cloud, req.region, req.size_in_gb
            ),
        ));
    }
    let v = VolumeRecord::new(
        account.id,
        &offer.cloud,
        &offer.region,
        &req.name,
        req.size_in_gb,
        offer.fixed_size,
        offer.supports_multi_mount,
        offer.price_micros_per_gb_hour,
        app.clock.now_ms(),
    );
    app.store.insert_volume(&v).await?;
    // The reconciler makes it at the cloud; wake it rather than wait.
    app.notify.notify_one();
    tracing::info!(volume = %v.id, account = %account.id, size_in_gb = v.size_in_gb, "volume created");
    Ok(ok(CreateVolumeResponse { id: v.id }))
}

/// `POST /volumes/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "volume")?;
    // Read first, for the event's `from`: the delete hides the volume.
    let before = app.store.get_volume(account.id, id).await?;
    let now = app.clock.now_ms();
    match app.store.delete_volume(account.id, id, now).await? {
        DeleteVolumeOutcome::Deleted => {
            if let Some(mut v) = before {
                let from = v.status;
                v.status = VolumeStatus::Deleting;
                v.status_details = None;
                crate::lifecycle::volumes::record_transition(&app.store, &v, from, now).await;
            }
            // The reconciler deletes it at the cloud.
            app.notify.notify_one();
            Ok(ok(Confirmation {
                id,
                status: "deleted".into(),
            }))
        }
        DeleteVolumeOutcome::NotFound => Err(ApiError::not_found("volume")),
        DeleteVolumeOutcome::Mounted => Err(ApiError::conflict(
            "the volume is mounted by a live instance; delete the instance first",
        )),
    }
}

/// Checks the `volume_ids` of an instance create: at most one, the
/// account's, not refused by its cloud, in the instance's cloud and region
/// (every cloud's rule: a DigitalOcean, Lambda, Hyperstack or Verda volume
/// mounts in its region, a RunPod network volume in its data center, which
/// is its region here; an AWS volume in its zone, where the adapter
/// launches the machine). One still being made is accepted: the launch
/// waits for it. Whether it is free is
/// decided when the instance is stored (see `Store::insert_instance_with_volumes`).
pub async fn volumes_for_instance(
    app: &AppRef,
    account: &Account,
    ids: &[String],
    cloud: &str,
    region: &str,
) -> Result<Vec<VolumeRecord>, ApiError> {
    if ids.len() > 1 {
        return Err(ApiError::invalid_field(
            "volume_ids",
            "only one volume can be mounted per instance",
        ));
    }
    let mut out = Vec::new();
    for raw in ids {
        let id = validate::uuid_field("volume_ids[0]", raw)?;
        let v = app.store.get_volume(account.id, id).await?.ok_or_else(|| {
            ApiError::invalid_field("volume_ids[0]", format!("no volume with id {id}"))
        })?;
        if v.cloud != cloud || v.region != region {
            let rule = app
                .catalog
                .volume_offers()
                .iter()
                .find(|o| o.cloud == v.cloud && o.region == v.region)
                .map_or_else(
                    || "a volume mounts only on instances in its own cloud and region".to_string(),
                    |o| o.mount_rule.clone(),
                );
            return Err(ApiError::invalid_field(
                "volume_ids[0]",
                format!(
                    "volume {id} is in {} {}, but the instance is in {cloud} {region}: {rule}",
                    v.cloud, v.region
                ),
            ));
        }
        if v.status == VolumeStatus::Error {
            return Err(ApiError::invalid_field(
                "volume_ids[0]",
                format!(
                    "volume {id} could not be made at {}: {}; delete it and create another",
                    v.cloud,
                    v.status_details
                        .as_deref()
                        .unwrap_or("the cloud refused it")
                ),
            ));
        }
        out.push(v);
    }
    Ok(out)
}
