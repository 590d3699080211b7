//! How every cloud adapter finds the machine of a Parasol instance: the
//! deployment's [`Marker`] and the cloud ids of the machines seen so far
//! ([`KnownMachines`]), over two calls each cloud supplies ([`Machines`]):
//! list its machines, and get one by the cloud's id.
//!
//! - Finding the machine of an instance id: a remembered cloud id is read
//!   with `get`; the cloud no longer having it forgets it. Without one (the
//!   cold path), the cloud's listing is searched for the machine's marker
//!   name, this deployment's or the legacy one, a live machine before one
//!   torn down; what is found is remembered.
//! - Launching (launch-then-adopt): the machine is looked for first, so a
//!   launch retried after a lost answer or a crash adopts the machine the
//!   earlier attempt made instead of renting a second; one already torn
//!   down is refused, since the instance is over. Otherwise the adapter
//!   creates it under the marker name and its id is remembered.
//! - The orphan sweep: the same listing, read for names under this
//!   deployment's marker (or the legacy one) on machines not being torn
//!   down.
//!
//! Why the cold path matters: the cache lives only as long as the process.
//! After a restart, a failover to another replica, or a launch whose
//! answer was lost, every describe, restart and terminate goes through the
//! listing, and so does every machine the sweep finds. A listing that
//! misses some machines (DigitalOcean's `GET /droplets` leaves GPU
//! droplets out unless asked for `type=gpus`) makes those machines
//! invisible exactly then: instances go to `error`, deletes send nothing
//! and the machines bill on. So the listing each adapter plugs in must
//! hold every machine Parasol may have made, and the conformance suite
//! drives each adapter cold (a fresh instance over the same cloud) before
//! it relies on what an adapter remembers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex as StdMutex;

use uuid::Uuid;

use super::Marker;
use crate::providers::{Launched, ProviderError};

/// One cloud's machines, as [`KnownMachines`] reaches them.
pub(crate) trait Machines: Sync {
    /// A machine as the cloud describes it.
    type Machine: Send;

    /// Every machine Parasol may have made on the account, under any
    /// deployment's marker or the legacy one, across all pages. A machine
    /// this leaves out cannot be found after a restart.
    async fn list_machines(&self) -> Result<Vec<Self::Machine>, ProviderError>;

    /// The machine the cloud calls `cloud_id`; `None` when the cloud says it
    /// has none.
    async fn get_machine(&self, cloud_id: &str) -> Result<Option<Self::Machine>, ProviderError>;

    /// The cloud's id of `m`.
    fn cloud_id(m: &Self::Machine) -> String;

    /// The name that carries the marker, where `m` has one.
    fn marker_name(m: &Self::Machine) -> Option<&str>;

    /// Whether `m` is being torn down or already is: a launch does not
    /// adopt it, the sweep does not list it, and a live machine of the
    /// same name is found before it.
    fn torn_down(m: &Self::Machine) -> bool;

    /// The most characters a machine's name may have at this cloud: where
    /// [`Marker::name`] is longer, machines are made under
    /// [`Marker::short_name`] (the marker finds either form).
    const NAME_LIMIT: usize = usize::MAX;
}

/// The deployment's marker and the cloud ids of the machines found or
/// launched so far, by Parasol's instance id.
#[derive(Debug)]
pub(crate) struct KnownMachines {
    marker: Marker,
    ids: StdMutex<HashMap<Uuid, String>>,
}

impl KnownMachines {
    /// Nothing known yet, for the deployment `deployment_id`.
    pub fn new(deployment_id: &str) -> Self {
        Self {
            marker: Marker::new(deployment_id),
            ids: StdMutex::new(HashMap::new()),
        }
    }

    /// The deployment's marker, which also names what else Parasol makes at
    /// the cloud for this deployment (volumes), so the sweep finds it.
    pub fn marker(&self) -> &Marker {
        &self.marker
    }

    fn known(&self, id: Uuid) -> Option<String> {
        self.ids.lock().expect("poisoned").get(&id).cloned()
    }

    fn remember(&self, id: Uuid, cloud_id: String) {
        self.ids.lock().expect("poisoned").insert(id, cloud_id);
    }

    /// Forgets the machine of `id`, once the cloud has said it is gone.
    pub fn forget(&self, id: Uuid) {
        self.ids.lock().expect("poisoned").remove(&id);
    }

    /// The machine of instance `id`, if the cloud has one.
    pub async fn find<C: Machines>(
        &self,
        cloud: &C,
        id: Uuid,
    ) -> Result<Option<C::Machine>, ProviderError> {
        if let Some(cloud_id) = self.known(id) {
            let found = cloud.get_machine(&cloud_id).await?;
            if found.is_none() {
                self.forget(id);
            }
            return Ok(found);
        }
        let found = cloud
            .list_machines()
            .await?
            .into_iter()
            .filter(|m| C::marker_name(m).is_some_and(|n| self.marker.is_for(n, id)))
            .min_by_key(|m| C::torn_down(m));
        if let Some(m) = &found {
            self.remember(id, C::cloud_id(m));
        }
        Ok(found)
    }

    /// The machine of instance `id`: the one an earlier attempt made, or a
    /// new one from `create`, which is given the name to create it under
    /// and answers the cloud's id. A machine already torn down is refused
    /// (permanently): its instance is over.
    pub async fn launch<C, F, Fut>(
        &self,
        cloud: &C,
        id: Uuid,
        create: F,
    ) -> Result<Launched, ProviderError>
    where
        C: Machines,
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<String, ProviderError>>,
    {
        if let Some(m) = self.find(cloud, id).await? {
            if C::torn_down(&m) {
                return Err(ProviderError::Permanent(
                    "the machine for this instance was already torn down".into(),
                ));
            }
            return Ok(Launched {
                cloud_assigned_id: C::cloud_id(&m),
            });
        }
        let mut name = self.marker.name(id);
        if name.len() > C::NAME_LIMIT {
            name = self.marker.short_name(id);
        }
        let cloud_id = create(name).await?;
        self.remember(id, cloud_id.clone());
        Ok(Launched {
            cloud_assigned_id: cloud_id,
        })
    }

    /// Instance ids of the live machines under this deployment's marker.
    pub async fn marked<C: Machines>(&self, cloud: &C) -> Result<Vec<Uuid>, ProviderError> {
        self.live(cloud, |n| self.marker.ours(n)).await
    }

    /// Instance ids of the live machines under the legacy marker.
    pub async fn legacy_marked<C: Machines>(&self, cloud: &C) -> Result<Vec<Uuid>, ProviderError> {
        self.live(cloud, |n| self.marker.legacy(n)).await
    }

    /// The live machines whose names `read` takes an instance id from;
    /// their cloud ids are remembered, so the sweep's terminate that
    /// follows needs no second listing.
    async fn live<C: Machines>(
        &self,
        cloud: &C,
        read: impl Fn(&str) -> Option<Uuid>,
    ) -> Result<Vec<Uuid>, ProviderError> {
        let mut out = Vec::new();
        for m in cloud.list_machines().await? {
            if C::torn_down(&m) {
                continue;
            }
            if let Some(id) = C::marker_name(&m).and_then(&read) {
                self.remember(id, C::cloud_id(&m));
                out.push(id);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cloud in memory that counts its calls.
    #[derive(Default)]
    struct Cloud {
        machines: StdMutex<Vec<(String, String, bool)>>,
        lists: StdMutex<u32>,
        gets: StdMutex<u32>,
    }

    impl Cloud {
        fn add(&self, cloud_id: &str, name: &str, torn_down: bool) {
            self.machines
                .lock()
                .unwrap()
                .push((cloud_id.into(), name.into(), torn_down));
        }
        fn calls(&self) -> (u32, u32) {
            (*self.lists.lock().unwrap(), *self.gets.lock().unwrap())
        }
    }

    impl Machines for Cloud {
        type Machine = (String, String, bool);

        async fn list_machines(&self) -> Result<Vec<Self::Machine>, ProviderError> {
            *self.lists.lock().unwrap() += 1;
            Ok(self.machines.lock().unwrap().clone())
        }

        async fn get_machine(
            &self,
            cloud_id: &str,
        ) -> Result<Option<Self::Machine>, ProviderError> {
            *self.gets.lock().unwrap() += 1;
            Ok(self
                .machines
                .lock()
                .unwrap()
                .iter()
                .find(|m| m.0 == cloud_id)
                .cloned())
        }

        fn cloud_id(m: &Self::Machine) -> String {
            m.0.clone()
        }

        fn marker_name(m: &Self::Machine) -> Option<&str> {
            Some(&m.1)
        }

        fn torn_down(m: &Self::Machine) -> bool {
            m.2
        }
    }

    const DEPLOYMENT: &str = "c0ffee0042";

    #[tokio::test]
    async fn a_cold_find_lists_by_name_then_gets_by_the_remembered_id() {
        let cloud = Cloud::default();
        let known = KnownMachines::new(DEPLOYMENT);
        let (ours, legacy, theirs) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cloud.add("a", &Marker::new(DEPLOYMENT).name(ours), false);
        cloud.add("b", &format!("parasol-{legacy}"), false);
        cloud.add("c", &Marker::new("0123456789").name(theirs), false);

        assert_eq!(known.find(&cloud, ours).await.unwrap().unwrap().0, "a");
        assert_eq!(cloud.calls(), (1, 0), "cold: one listing");
        assert_eq!(known.find(&cloud, ours).await.unwrap().unwrap().0, "a");
        assert_eq!(cloud.calls(), (1, 1), "warm: a get by the cloud's id");
        assert_eq!(known.find(&cloud, legacy).await.unwrap().unwrap().0, "b");
        assert!(
            known.find(&cloud, theirs).await.unwrap().is_none(),
            "another deployment's machine is not ours"
        );

        cloud.machines.lock().unwrap().retain(|m| m.0 != "a");
        assert!(known.find(&cloud, ours).await.unwrap().is_none());
        let before = cloud.calls();
        assert!(known.find(&cloud, ours).await.unwrap().is_none());
        assert_eq!(
            cloud.calls(),
            (before.0 + 1, before.1),
            "a machine the cloud no longer has is forgotten: the next find lists"
        );
    }

    #[tokio::test]
    async fn a_live_machine_is_found_before_a_torn_down_one_of_the_same_name() {
        let cloud = Cloud::default();
        let known = KnownMachines::new(DEPLOYMENT);
        let id = Uuid::new_v4();
        let name = Marker::new(DEPLOYMENT).name(id);
        cloud.add("old", &name, true);
        cloud.add("new", &name, false);
        assert_eq!(known.find(&cloud, id).await.unwrap().unwrap().0, "new");
    }

    #[tokio::test]
    async fn a_launch_adopts_the_earlier_machine_and_refuses_a_torn_down_one() {
        let cloud = Cloud::default();
        let id = Uuid::new_v4();
        let name = Marker::new(DEPLOYMENT).name(id);

        // Nothing yet: created under the marker name, then remembered.
        let known = KnownMachines::new(DEPLOYMENT);
        let c = &cloud;
        let created = known
            .launch(c, id, |n| async move {
                assert_eq!(n, name);
                c.add("x", &n, false);
                Ok("x".to_string())
            })
            .await
            .unwrap();
        assert_eq!(created.cloud_assigned_id, "x");
        let lists = cloud.calls().0;
        known.find(&cloud, id).await.unwrap();
        assert_eq!(cloud.calls().0, lists, "the new machine's id is remembered");

        // A fresh process retrying the launch adopts it.
        let fresh = KnownMachines::new(DEPLOYMENT);
        let again = fresh
            .launch(&cloud, id, |_| async {
                panic!("a second machine was created")
            })
            .await
            .unwrap();
        assert_eq!(again, created);

        // Torn down meanwhile: the instance is over.
        cloud.machines.lock().unwrap()[0].2 = true;
        let refused = KnownMachines::new(DEPLOYMENT)
            .launch(&cloud, id, |_| async { panic!("relaunched") })
            .await;
        assert!(
            matches!(refused, Err(ProviderError::Permanent(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn the_sweep_lists_live_machines_under_either_marker_and_remembers_them() {
        let cloud = Cloud::default();
        let known = KnownMachines::new(DEPLOYMENT);
        let (live, going, legacy) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cloud.add("1", &Marker::new(DEPLOYMENT).name(live), false);
        cloud.add("2", &Marker::new(DEPLOYMENT).name(going), true);
        cloud.add("3", &format!("parasol-{legacy}"), false);
        cloud.add("4", &Marker::new("0123456789").name(Uuid::new_v4()), false);
        cloud.add("5", "my-own-box", false);
        assert_eq!(known.marked(&cloud).await.unwrap(), vec![live]);
        assert_eq!(known.legacy_marked(&cloud).await.unwrap(), vec![legacy]);
        let lists = cloud.calls().0;
        assert_eq!(known.find(&cloud, live).await.unwrap().unwrap().0, "1");
        assert_eq!(known.find(&cloud, legacy).await.unwrap().unwrap().0, "3");
        assert_eq!(cloud.calls().0, lists, "found by the remembered ids");
    }
}
