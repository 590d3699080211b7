//! Volumes at the HTTP clouds: the lifecycle every adapter shares, written
//! once over the few calls that differ per cloud ([`VolumeApi`]).
//!
//! A volume is named (or described) with the deployment's marker and
//! Parasol's volume id, so it is found again without the cloud's id: a
//! create first looks for it (a create whose answer was lost is adopted,
//! never made twice), a describe or delete that has no cloud id yet finds
//! it the same way, and the orphan sweep lists this deployment's volumes by
//! it. With the cloud's id known, one get by id answers.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{parse, Failure, RestApi};
use crate::providers::{Offer, ProviderError, VolumeOffer, VolumeRef, VolumeRequest, VolumeState};

/// A cloud's volume calls, as its adapter makes them.
pub(crate) trait VolumeApi: Sync {
    /// A volume as the cloud describes it.
    type Volume: Send;

    /// The volume with the cloud's id `cloud_id`; `None` when the cloud
    /// has none (404, or deleted).
    async fn get_volume(
        &self,
        cloud_id: &str,
        region: &str,
    ) -> Result<Option<Self::Volume>, ProviderError>;
    /// The account's volumes (in `region` where the cloud can filter).
    async fn list_volumes(&self, region: Option<&str>) -> Result<Vec<Self::Volume>, ProviderError>;
    /// Asks the cloud to make the volume, named with the marker.
    async fn make_volume(&self, req: &VolumeRequest) -> Result<VolumeState, ProviderError>;
    /// Asks the cloud to delete `v`; [`VolumeState::Gone`] when it is.
    async fn remove_volume(&self, v: &Self::Volume) -> Result<VolumeState, ProviderError>;
    /// The Parasol volume id under this deployment's marker that `v`
    /// carries, if any.
    fn marked(&self, v: &Self::Volume) -> Option<Uuid>;
    /// `v`'s id and region at the cloud.
    fn place(&self, v: &Self::Volume) -> (String, String);
    /// Where `v` is, in provider-neutral terms.
    fn state(&self, v: &Self::Volume) -> VolumeState;
}

/// The volume of `r`: by the cloud's id when known, else by its marker.
pub(crate) async fn find<A: VolumeApi>(
    api: &A,
    r: &VolumeRef,
) -> Result<Option<A::Volume>, ProviderError> {
    match &r.cloud_assigned_id {
        Some(id) => api.get_volume(id, &r.region).await,
        None => Ok(api
            .list_volumes(Some(&r.region))
            .await?
            .into_iter()
            .find(|v| api.marked(v) == Some(r.volume_id))),
    }
}

/// [`crate::providers::Provider::create_volume`]: the volume made for
/// `req` earlier, or a new one.
pub(crate) async fn create<A: VolumeApi>(
    api: &A,
    req: &VolumeRequest,
) -> Result<VolumeState, ProviderError> {
    let r = VolumeRef {
        volume_id: req.volume_id,
        region: req.region.clone(),
        cloud_assigned_id: None,
    };
    match find(api, &r).await? {
        Some(v) => Ok(api.state(&v)),
        None => api.make_volume(req).await,
    }
}

/// [`crate::providers::Provider::describe_volume`].
pub(crate) async fn describe<A: VolumeApi>(
    api: &A,
    r: &VolumeRef,
) -> Result<VolumeState, ProviderError> {
    Ok(find(api, r)
        .await?
        .map_or(VolumeState::Gone, |v| api.state(&v)))
}

/// [`crate::providers::Provider::delete_volume`].
pub(crate) async fn delete<A: VolumeApi>(
    api: &A,
    r: &VolumeRef,
) -> Result<VolumeState, ProviderError> {
    match find(api, r).await? {
        None => Ok(VolumeState::Gone),
        Some(v) => match api.state(&v) {
            VolumeState::Deleting => Ok(VolumeState::Deleting),
            _ => api.remove_volume(&v).await,
        },
    }
}

/// [`crate::providers::Provider::list_marked_volumes`].
pub(crate) async fn list_marked<A: VolumeApi>(api: &A) -> Result<Vec<VolumeRef>, ProviderError> {
    Ok(api
        .list_volumes(None)
        .await?
        .iter()
        .filter(|v| !matches!(api.state(v), VolumeState::Gone))
        .filter_map(|v| {
            let (id, region) = api.place(v);
            Some(VolumeRef {
                volume_id: api.marked(v)?,
                region,
                cloud_assigned_id: Some(id),
            })
        })
        .collect())
}

/// The kind of volume a cloud sells, the same in each of its regions.
pub(crate) struct VolumeKind {
    pub cloud: &'static str,
    pub supports_multi_mount: bool,
    pub fixed_size: bool,
    /// Millionths of a dollar per GB-hour.
    pub price_micros_per_gb_hour: i64,
    pub min_size_gb: i64,
    pub max_size_gb: i64,
    /// See [`VolumeOffer::mount_rule`].
    pub mount_rule: &'static str,
}

impl VolumeKind {
    /// One offer of this kind in every region any of `offers` is in.
    pub fn in_regions_of(&self, offers: &[Offer]) -> Vec<VolumeOffer> {
        let mut regions: Vec<&str> = offers
            .iter()
            .flat_map(|o| o.regions.iter().map(|r| r.region.as_str()))
            .collect();
        regions.sort_unstable();
        regions.dedup();
        regions
            .into_iter()
            .map(|region| VolumeOffer {
                cloud: self.cloud.to_string(),
                region: region.to_string(),
                supports_multi_mount: self.supports_multi_mount,
                fixed_size: self.fixed_size,
                price_micros_per_gb_hour: self.price_micros_per_gb_hour,
                min_size_gb: self.min_size_gb,
                max_size_gb: self.max_size_gb,
                mount_rule: self.mount_rule.to_string(),
            })
            .collect()
    }
}

/// `GET path` of a REST cloud, `None` on 404: how a volume is got by id.
pub(crate) async fn get_found<T: DeserializeOwned>(
    api: &impl RestApi,
    path: &str,
) -> Result<Option<T>, ProviderError> {
    let (status, text) = api.call(Method::GET, path, None).await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let what = format!("GET {path}");
    if !status.is_success() {
        return Err(api.classify(&what, &Failure { status, body: text }));
    }
    parse(api.http().cloud, &what, &text).map(Some)
}

/// `DELETE path` of a REST cloud: [`VolumeState::Gone`] once accepted or
/// already gone (404); a refusal (a volume still attached) is an error, so
/// the reconciler retries it.
pub(crate) async fn delete_found(
    api: &impl RestApi,
    path: &str,
) -> Result<VolumeState, ProviderError> {
    let (status, text) = api.call(Method::DELETE, path, None).await?;
    if status.is_success() || status == StatusCode::NOT_FOUND {
        return Ok(VolumeState::Gone);
    }
    Err(api.classify(&format!("DELETE {path}"), &Failure { status, body: text }))
}
