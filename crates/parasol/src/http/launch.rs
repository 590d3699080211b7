//! `POST /instances/launch` and `POST /clusters/launch`: Parasol's launches
//! by requirements (lifecycle/placement.rs ranks the offers). Each takes the
//! best candidate that admits it through the ordinary create path, so every
//! rule of `/instances/create` and `/clusters/create` applies unchanged; a
//! candidate that turns out full at admission is passed over for the next.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use parasol_api::{
    CandidatesResponse, ClusterAvailability, ClusterLaunchRequest, CreateClusterRequest,
    CreateRequest, CreateResponse, InstanceType, LaunchRequest, OnPreemption, RentalChoice,
    RentalType,
};

use super::{ok, AppRef, Body};
use crate::error::ApiError;
use crate::lifecycle::placement::{self, Attempt, Placement, Search};
use crate::store::Account;

/// Longest `wait_for_capacity_seconds` accepted: a week.
const MAX_WAIT_SECONDS: i64 = 7 * 24 * 3600;

/// `POST /instances/launch`.
pub async fn launch(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<LaunchRequest>,
) -> Result<Response, ApiError> {
    placement::check(&req.requirements).map_err(|(f, m)| ApiError::invalid_field(f, m))?;
    let wait = req.wait_for_capacity_seconds.unwrap_or(0);
    if !(0..=MAX_WAIT_SECONDS).contains(&wait) {
        return Err(ApiError::invalid_field(
            "wait_for_capacity_seconds",
            format!(
                "wait_for_capacity_seconds must be between 0 and {MAX_WAIT_SECONDS}, got {wait}"
            ),
        ));
    }
    let rental = req.requirements.rental_type.unwrap_or_default();
    if req.on_preemption == Some(OnPreemption::Relaunch) && rental == RentalChoice::OnDemand {
        return Err(ApiError::invalid_field(
            "on_preemption",
            "on_preemption: relaunch needs requirements.rental_type spot or any",
        ));
    }
    let types = app.catalog.instance_types(&app.store).await?;
    let search = search(&app, &types, &req);
    if req.dry_run {
        return candidates(search);
    }
    let now = app.clock.now_ms();
    let mut placed = Placement {
        requirements: req.requirements.clone(),
        os: req.os.clone(),
        wait_seconds: (wait > 0).then_some(wait),
        wait_until_ms: (wait > 0).then(|| now + wait * 1000),
        on_preemption: req.on_preemption,
        ..Placement::default()
    };
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("launch-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let create = |c: &parasol_api::Candidate| CreateRequest {
        cloud: c.cloud.clone(),
        region: c.region.clone(),
        shade_instance_type: c.shade_instance_type.clone(),
        shade_cloud: true,
        name: name.clone(),
        rental_type: Some(c.rental_type),
        os: req.os.clone(),
        template_id: req.template_id.clone(),
        launch_configuration: req.launch_configuration.clone(),
        volume_ids: None,
        ssh_key_id: req.ssh_key_id.clone(),
        auto_delete: req.auto_delete.clone(),
        alert: req.alert.clone(),
        volume_mount: None,
        tags: req.tags.clone(),
        envs: req.envs.clone(),
        idle_policy: req.idle_policy.clone(),
        on_unhealthy: req.on_unhealthy,
    };
    for c in search.available() {
        match super::instances::create_instance(&app, &account, create(c), Some(placed.clone()))
            .await
        {
            Ok(id) => return Ok(created(id)),
            Err(e) if e.code == "insufficient_capacity" => placed.tried.push(Attempt {
                cloud: c.cloud.clone(),
                region: c.region.clone(),
                shade_instance_type: c.shade_instance_type.clone(),
                rental_type: c.rental_type,
                reason: "full at admission".into(),
            }),
            Err(e) => return Err(e),
        }
    }
    // Nothing has room now. Asked to wait: admit the instance on the best
    // matching offer, waiting; the reconciler places it when capacity
    // returns, or fails it at the deadline.
    if let (true, Some(best)) = (wait > 0, search.candidates.first()) {
        placed.waiting = true;
        let id =
            super::instances::create_instance(&app, &account, create(best), Some(placed)).await?;
        return Ok(created(id));
    }
    Err(ApiError::no_capacity(search.why_none()))
}

/// The create answer; the provider assigns its own id later.
fn created(id: uuid::Uuid) -> Response {
    ok(CreateResponse {
        id,
        cloud_assigned_id: String::new(),
    })
}

fn search(app: &AppRef, types: &[InstanceType], req: &LaunchRequest) -> Search {
    placement::search(types, &req.requirements, req.os.as_deref(), |c, r, t| {
        app.catalog.is_cooling(c, r, t)
    })
}

/// The dry run's answer: every matching offer in the order a launch tries
/// them, or why there is none.
fn candidates(search: Search) -> Result<Response, ApiError> {
    if search.candidates.is_empty() {
        return Err(ApiError::no_capacity(search.why_none()));
    }
    Ok(ok(CandidatesResponse {
        candidates: search.candidates,
    }))
}

/// `POST /clusters/launch`: the cheapest cloud and region with room for
/// every node; all nodes there, as a cluster must be. Clusters are placed
/// at admission only: once admitted, a cluster whose node launch fails is
/// rolled back as any cluster is.
pub async fn launch_cluster(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<ClusterLaunchRequest>,
) -> Result<Response, ApiError> {
    placement::check(&req.requirements).map_err(|(f, m)| ApiError::invalid_field(f, m))?;
    if req
        .requirements
        .rental_type
        .is_some_and(|r| r != RentalChoice::OnDemand)
    {
        return Err(ApiError::invalid_field(
            "requirements.rental_type",
            "clusters are rented on demand only",
        ));
    }
    if req.num_instances < 1 {
        return Err(ApiError::invalid_field(
            "num_instances",
            format!(
                "num_instances must be at least 1, got {}",
                req.num_instances
            ),
        ));
    }
    // One catalog entry per cluster shape: the node type, with the
    // shape's per-region availability in place of the node type's own.
    let shapes = app.catalog.cluster_types(&app.store).await?;
    if !shapes.iter().any(|s| s.num_instances == req.num_instances) {
        let mut counts: Vec<i64> = shapes.iter().map(|s| s.num_instances).collect();
        counts.sort_unstable();
        counts.dedup();
        let counts: Vec<String> = counts.iter().map(|n| n.to_string()).collect();
        return Err(ApiError::no_capacity(format!(
            "no cluster shape has {} nodes; shapes come with {} nodes",
            req.num_instances,
            counts.join(", ")
        )));
    }
    let mut types: Vec<InstanceType> = Vec::new();
    for s in shapes
        .into_iter()
        .filter(|s| s.num_instances == req.num_instances)
    {
        let ClusterAvailability {
            region,
            display_name,
            available,
        } = s.availability;
        let entry = parasol_api::Availability {
            region,
            available,
            display_name,
            rental_type: RentalType::OnDemand,
            hourly_price: None,
        };
        match types.iter_mut().find(|t| {
            t.cloud == s.cloud && t.shade_instance_type == s.cluster_type.shade_instance_type
        }) {
            Some(t) => t.availability.push(entry),
            None => {
                let mut t = s.cluster_type;
                t.availability = vec![entry];
                types.push(t);
            }
        }
    }
    let search = placement::search(&types, &req.requirements, req.os.as_deref(), |c, r, t| {
        app.catalog.is_cooling(c, r, t)
    });
    if req.dry_run {
        return candidates(search);
    }
    let name = req.name.clone().unwrap_or_else(|| {
        format!(
            "cluster-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    });
    for c in search.available() {
        let create = CreateClusterRequest {
            name: name.clone(),
            cloud: c.cloud.clone(),
            region: c.region.clone(),
            cluster_type: c.shade_instance_type.clone(),
            num_instances: req.num_instances,
            ssh_key_id: req.ssh_key_id.clone(),
            os: req.os.clone(),
        };
        match super::clusters::create(State(app.clone()), Extension(account.clone()), Body(create))
            .await
        {
            Err(e) if e.code == "insufficient_capacity" => continue,
            done => return done,
        }
    }
    Err(ApiError::no_capacity(search.why_none()))
}
