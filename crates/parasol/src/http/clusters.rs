//! `/clusters/*`: multi-node clusters, created and deleted as a whole.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};
use parasol_api::{
    dollars, Cluster, ClusterRegionInfo, ClusterTypesResponse, ClustersResponse, Confirmation,
    CreateClusterRequest, CreateResponse, Status,
};
use uuid::Uuid;

use super::instances::{new_instance, render, NewInstance};
use super::{ok, path_id, AppRef, Body};
use crate::error::ApiError;
use crate::lifecycle::begin_delete;
use crate::lifecycle::cost;
use crate::providers::catalog::has_room_for;
use crate::store::{Account, ClusterInternal, ClusterRecord, InsertOutcome};
use crate::validate;

/// Largest cluster accepted, whatever a provider claims.
const MAX_NODES: i64 = 64;

/// `GET /clusters/types`.
pub async fn types(State(app): State<AppRef>) -> Result<Response, ApiError> {
    Ok(ok(ClusterTypesResponse {
        cluster_types: app.catalog.cluster_types(&app.store).await?,
    }))
}

/// `GET /clusters`.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let mut clusters = Vec::new();
    for rec in app.store.list_clusters(account.id).await? {
        clusters.push(view(&app, rec, now).await?);
    }
    Ok(ok(ClustersResponse { clusters }))
}

/// `GET /clusters/{id}/info`.
pub async fn info(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "cluster")?;
    let rec = app
        .store
        .get_cluster(account.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("cluster"))?;
    Ok(ok(view(&app, rec, app.clock.now()).await?))
}

/// The API view: the cluster with its nodes, their summed price and cost.
async fn view(app: &AppRef, rec: ClusterRecord, now: DateTime<Utc>) -> Result<Cluster, ApiError> {
    let nodes = app.store.cluster_nodes(rec.cluster.id).await?;
    let mut c = rec.cluster;
    c.hourly_price = nodes.iter().map(|n| n.instance.hourly_price).sum();
    let cents: i64 = nodes.iter().map(|n| cost::instance_cents(n, now)).sum();
    c.cost_estimate = Some(format!("${}", dollars(cents)));
    c.instances = nodes.iter().map(|n| render(n, now)).collect();
    Ok(c)
}

/// `POST /clusters/create`.
pub async fn create(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<CreateClusterRequest>,
) -> Result<Response, ApiError> {
    validate::name("name", &req.name)?;
    let offers = app.catalog.cluster_offers();
    let of_cloud: Vec<_> = offers.iter().filter(|o| o.cloud == req.cloud).collect();
    if of_cloud.is_empty() {
        let mut clouds: Vec<&str> = offers.iter().map(|o| o.cloud.as_str()).collect();
        clouds.dedup();
        return Err(ApiError::invalid_field(
            "cloud",
            format!(
                "cloud {:?} offers no clusters; clusters are offered by: {}",
                req.cloud,
                clouds.join(", ")
            ),
        ));
    }
    let Some(offer) = of_cloud
        .iter()
        .find(|o| o.shade_instance_type == req.cluster_type)
    else {
        let types: Vec<&str> = of_cloud
            .iter()
            .map(|o| o.shade_instance_type.as_str())
            .collect();
        return Err(ApiError::invalid_field(
            "cluster_type",
            format!(
                "{} has no cluster type {:?}; it offers: {}",
                req.cloud,
                req.cluster_type,
                types.join(", ")
            ),
        ));
    };
    if !offer.node_counts.contains(&req.num_instances) || req.num_instances > MAX_NODES {
        let counts: Vec<String> = offer.node_counts.iter().map(|n| n.to_string()).collect();
        return Err(ApiError::invalid_field(
            "num_instances",
            format!(
                "{} clusters of {} come with {} nodes, not {}",
                req.cluster_type,
                req.cloud,
                counts.join(", "),
                req.num_instances
            ),
        ));
    }
    let Some(region) = offer.regions.iter().find(|r| r.region == req.region) else {
        let regions: Vec<&str> = offer.regions.iter().map(|r| r.region.as_str()).collect();
        return Err(ApiError::invalid_field(
            "region",
            format!(
                "{} clusters are not offered in region {:?} of {}; they are offered in: {}",
                req.cluster_type,
                req.region,
                req.cloud,
                regions.join(", ")
            ),
        ));
    };
    let node_offer = app
        .catalog
        .find(&req.cloud, &req.cluster_type)
        .ok_or_else(|| {
            ApiError::unavailable(
                "the node type of this cluster is missing from the catalog; retry shortly",
            )
        })?;
    let full = || {
        ApiError::no_capacity(format!(
            "{} has no room for {} more {} cluster nodes in {}; see /clusters/types",
            req.cloud, req.num_instances, req.cluster_type, region.region
        ))
    };
    if !has_room_for(region.capacity, 0, req.num_instances) {
        return Err(full());
    }

    let now = app.clock.now();
    let id = Uuid::new_v4();
    let mut nodes = Vec::new();
    for n in 1..=req.num_instances {
        let mut node = new_instance(
            &app,
            &account,
            NewInstance {
                name: format!("{}-node-{n}", req.name),
                offer: &node_offer,
                region,
                os: req.os.clone(),
                ssh_key_id: req.ssh_key_id.clone(),
                now,
            },
        )
        .await?;
        node.cluster_id = Some(id);
        nodes.push(node);
    }
    let rec = ClusterRecord {
        account_id: account.id,
        generation: 1,
        wake_at: Some(now.timestamp_millis()),
        cluster: Cluster {
            id,
            cloud: req.cloud.clone(),
            name: req.name.clone(),
            cloud_cluster_id: None,
            region_info: ClusterRegionInfo {
                region: region.region.clone(),
                display_name: region.display_name.clone(),
            },
            status: Status::Creating,
            status_details: None,
            created_at: now,
            updated_at: now,
            instances: Vec::new(),
            hourly_price: nodes.iter().map(|n| n.instance.hourly_price).sum(),
            cost_estimate: None,
            active_at: None,
        },
        internal: ClusterInternal::default(),
    };
    match app
        .store
        .insert_cluster(&rec, &nodes, region.capacity.slots())
        .await?
    {
        InsertOutcome::NoCapacity => return Err(full()),
        InsertOutcome::BudgetExceeded(why) => return Err(ApiError::budget_exceeded(why)),
        InsertOutcome::Stored | InsertOutcome::VolumeInUse => {}
    }
    app.catalog.invalidate();
    app.notify.notify_one();
    tracing::info!(cluster = %id, account = %account.id, nodes = req.num_instances, cloud = %req.cloud,
        region = %req.region, "cluster created");
    Ok(ok(CreateResponse {
        id,
        cloud_assigned_id: String::new(),
    }))
}

/// `POST /clusters/{id}/delete`: the cluster and every node go to
/// `deleting` now (billing stops); the reconciler finishes the teardown.
pub async fn delete(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "cluster")?;
    let now = app.clock.now();
    for _ in 0..16 {
        let mut rec = app
            .store
            .get_cluster(account.id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("cluster"))?;
        if rec.cluster.status == Status::Deleting {
            return Ok(ok(Confirmation {
                id,
                status: Status::Deleting.to_string(),
            }));
        }
        rec.cluster.status = Status::Deleting;
        rec.cluster.updated_at = now;
        rec.wake_at = Some(now.timestamp_millis());
        if app
            .store
            .update_cluster(&mut rec, now.timestamp_millis())
            .await?
        {
            // Stop billing on every node at once; nodes the reconciler is
            // moving right now are caught by the cluster step instead.
            for mut node in app.store.cluster_nodes(id).await? {
                if matches!(
                    node.instance.status,
                    Status::Creating | Status::PendingProvider | Status::Pending | Status::Active
                ) {
                    begin_delete(
                        &mut node,
                        now,
                        Some(format!("cluster {} deleted", rec.cluster.name)),
                    );
                    app.store
                        .update_instance(&mut node, now.timestamp_millis())
                        .await?;
                }
            }
            app.catalog.invalidate();
            app.notify.notify_one();
            tracing::info!(cluster = %id, "cluster delete requested");
            return Ok(ok(Confirmation {
                id,
                status: Status::Deleting.to_string(),
            }));
        }
    }
    Err(ApiError::conflict(
        "the cluster is changing too quickly; retry the request",
    ))
}
