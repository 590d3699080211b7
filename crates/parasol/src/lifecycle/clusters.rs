//! Clusters: a status that follows the nodes, all or nothing.
//!
//! A cluster's nodes are ordinary instances and the reconciler drives each
//! of them like any other. The cluster step only reads the nodes and decides
//! (in [`assess`], a pure function) what the cluster's status is; when a
//! node fails it moves every other node to `deleting`, so a partial cluster
//! never keeps billing. A node's transition wakes its cluster.
//!
//! | nodes                                  | cluster   |
//! |----------------------------------------|-----------|
//! | any node not yet accepted by provider  | creating  |
//! | all accepted, some not active          | pending (`k/N nodes active`) |
//! | all active                             | active    |
//! | any node failed, preempted or lost     | error (the rest torn down) |
//! | delete requested, nodes still going    | deleting  |
//! | delete requested, every node gone      | deleted   |

use parasol_api::{Instance, Status};

use super::begin_delete;
use super::reconciler::Reconciler;
use crate::store::{ClusterRecord, InstanceRecord, StoreResult};

/// What the nodes say the cluster's status should be, while it is neither
/// being deleted nor already failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Creating,
    Pending {
        active: usize,
        total: usize,
    },
    Active,
    /// A node broke: its name and why.
    Failed {
        node: String,
        reason: String,
    },
}

/// Decides a live cluster's status from its nodes.
pub fn assess(nodes: &[&Instance]) -> Verdict {
    for n in nodes {
        match n.status {
            Status::Error => {
                return Verdict::Failed {
                    node: n.name.clone(),
                    reason: n.status_details.clone().unwrap_or_else(|| "failed".into()),
                }
            }
            Status::Deleting | Status::Deleted => {
                return Verdict::Failed {
                    node: n.name.clone(),
                    reason: n
                        .status_details
                        .clone()
                        .unwrap_or_else(|| "the machine went away".into()),
                }
            }
            Status::Creating | Status::PendingProvider | Status::Pending | Status::Active => {}
        }
    }
    let total = nodes.len();
    let active = nodes.iter().filter(|n| n.status == Status::Active).count();
    if nodes.iter().any(|n| n.status == Status::Creating) {
        Verdict::Creating
    } else if active == total {
        Verdict::Active
    } else {
        Verdict::Pending { active, total }
    }
}

/// Whether a node holds nothing at the provider any more.
fn node_final(n: &InstanceRecord) -> bool {
    match n.instance.status {
        Status::Deleted => true,
        Status::Error => n.internal.released,
        Status::Creating
        | Status::PendingProvider
        | Status::Pending
        | Status::Active
        | Status::Deleting => false,
    }
}

impl Reconciler {
    /// One step for one cluster: settle its status from its nodes, and
    /// propagate deletes and failures down to them.
    pub(super) async fn step_cluster(&self, mut rec: ClusterRecord) -> StoreResult<()> {
        let now = self.clock.now();
        let nodes = self.store.cluster_nodes(rec.cluster.id).await?;
        let before = (rec.cluster.status, rec.cluster.status_details.clone());
        match rec.cluster.status {
            Status::Deleting | Status::Error => {
                let reason = match rec.cluster.status {
                    Status::Error => format!("cluster {} failed", rec.cluster.name),
                    _ => format!("cluster {} deleted", rec.cluster.name),
                };
                self.tear_down_nodes(&nodes, &reason).await?;
                let nodes = self.store.cluster_nodes(rec.cluster.id).await?;
                if nodes.iter().all(node_final) {
                    rec.wake_at = None;
                    if rec.cluster.status == Status::Deleting {
                        rec.cluster.status = Status::Deleted;
                        rec.internal.deleted_at = Some(now);
                    }
                } else {
                    rec.wake_at = Some(now.timestamp_millis() + self.cfg.poll.as_millis() as i64);
                }
            }
            Status::Deleted => rec.wake_at = None,
            Status::Creating | Status::PendingProvider | Status::Pending | Status::Active => {
                let live: Vec<&Instance> = nodes.iter().map(|n| &n.instance).collect();
                match assess(&live) {
                    Verdict::Creating => rec.cluster.status = Status::Creating,
                    Verdict::Pending { active, total } => {
                        rec.cluster.status = Status::Pending;
                        rec.cluster.status_details = Some(format!("{active}/{total} nodes active"));
                    }
                    Verdict::Active => {
                        rec.cluster.status = Status::Active;
                        rec.cluster.status_details = None;
                        rec.cluster.active_at.get_or_insert(now);
                    }
                    Verdict::Failed { node, reason } => {
                        rec.cluster.status = Status::Error;
                        rec.cluster.status_details = Some(format!("node {node} failed: {reason}"));
                    }
                }
                if rec.cluster.status != Status::Creating && rec.cluster.cloud_cluster_id.is_none()
                {
                    // Every node was accepted: the provider's cluster now
                    // exists. The sim names it after Parasol's id.
                    rec.cluster.cloud_cluster_id = Some(format!(
                        "{}-cluster-{}",
                        rec.cluster.cloud,
                        &rec.cluster.id.simple().to_string()[..12]
                    ));
                }
                rec.wake_at = Some(
                    now.timestamp_millis()
                        + match rec.cluster.status {
                            Status::Active => self.cfg.active_check.as_millis() as i64,
                            // Error tears down on the next step right away.
                            Status::Error => 0,
                            _ => self.cfg.poll.as_millis() as i64,
                        },
                );
            }
        }
        if (rec.cluster.status, rec.cluster.status_details.clone()) != before {
            rec.cluster.updated_at = now;
            tracing::info!(
                cluster = %rec.cluster.id,
                from = %before.0,
                to = %rec.cluster.status,
                details = rec.cluster.status_details.as_deref().unwrap_or(""),
                "cluster transition"
            );
        }
        if !self
            .store
            .update_leased_cluster(&mut rec, now.timestamp_millis(), self.replica)
            .await?
        {
            tracing::debug!(cluster = %rec.cluster.id, "lost a race on a cluster; will re-read");
        }
        Ok(())
    }

    /// Moves every node that still runs to `deleting`; failed nodes release
    /// their machine on their own.
    async fn tear_down_nodes(&self, nodes: &[InstanceRecord], reason: &str) -> StoreResult<()> {
        let now = self.clock.now();
        for n in nodes {
            match n.instance.status {
                Status::Creating | Status::PendingProvider | Status::Pending | Status::Active => {
                    let mut n = n.clone();
                    begin_delete(&mut n, now, Some(reason.to_string()));
                    // A lost race is fine: the next cluster step retries.
                    if self
                        .store
                        .update_instance(&mut n, now.timestamp_millis())
                        .await?
                    {
                        tracing::info!(instance = %n.instance.id, reason, "tearing down cluster node");
                    }
                }
                Status::Error | Status::Deleting | Status::Deleted => {}
            }
        }
        self.notify.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, status: Status) -> Instance {
        let mut i: Instance = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::new_v4(), "cloud": "c", "region": "r", "shade_instance_type": "t",
            "cloud_instance_type": "t", "cloud_assigned_id": "", "shade_cloud": true, "name": name,
            "configuration": {"memory_in_gb": 1, "storage_in_gb": 1, "vcpus": 1, "num_gpus": 8,
                "gpu_type": "H100", "interconnect": "sxm5", "vram_per_gpu_in_gb": 80,
                "gpu_manufacturer": "nvidia", "os": "ubuntu"},
            "ip": null, "ssh_user": "u", "ssh_port": 22, "status": "creating", "cost_estimate": "0.00",
            "hourly_price": 100, "rental_terms": {"rental_type": "on_demand", "ending_at": null},
            "active_at": null, "created_at": "2026-01-01T00:00:00Z", "deleted_at": null
        }))
        .unwrap();
        i.status = status;
        i
    }

    #[test]
    fn a_cluster_is_creating_until_every_node_is_accepted() {
        let (a, b) = (
            node("c-node-1", Status::PendingProvider),
            node("c-node-2", Status::Creating),
        );
        assert_eq!(assess(&[&a, &b]), Verdict::Creating);
    }

    #[test]
    fn a_cluster_is_pending_with_a_count_until_every_node_is_active() {
        let (a, b, c) = (
            node("c-node-1", Status::Active),
            node("c-node-2", Status::Pending),
            node("c-node-3", Status::Active),
        );
        assert_eq!(
            assess(&[&a, &b, &c]),
            Verdict::Pending {
                active: 2,
                total: 3
            }
        );
        let b = node("c-node-2", Status::Active);
        assert_eq!(assess(&[&a, &b, &c]), Verdict::Active);
    }

    #[test]
    fn one_failed_or_vanished_node_fails_the_cluster() {
        let a = node("c-node-1", Status::Active);
        let mut b = node("c-node-2", Status::Error);
        b.status_details = Some("GPU fell off the bus".into());
        assert_eq!(
            assess(&[&a, &b]),
            Verdict::Failed {
                node: "c-node-2".into(),
                reason: "GPU fell off the bus".into()
            }
        );
        let mut c = node("c-node-2", Status::Deleting);
        c.status_details = Some("preempted".into());
        assert!(
            matches!(assess(&[&a, &c]), Verdict::Failed { reason, .. } if reason == "preempted")
        );
    }
}
