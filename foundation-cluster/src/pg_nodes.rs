//! Per-node pg groups: a feature that runs one actor per node names its group `NAME@NODE`
//! (CRDT replicators, the cluster cache's parts, coordinators), so that every node sees which
//! nodes run one and reaches them.

use ractor::{ActorCell, ActorStatus};

/// The first live (not stopping) member of each group `PREFIX@NODE` in `scope`, by node name,
/// sorted by node. `prefix` ends with `@`. A remote member counts for `NODE` only if it runs on
/// the node whose session authenticated as `NODE`: the group name is the joining peer's choice,
/// so a peer cannot stand in for another node by joining its group. (Local members are this
/// process's own code's, trusted as named: several nodes in one process, as in tests, share pg.)
pub(crate) fn live_by_node(cluster: &crate::Cluster, scope: &str, prefix: &str) -> Vec<(String, ActorCell)> {
    let scope = scope.to_string();
    let mut found: Vec<_> = ractor::pg::which_scoped_groups(&scope)
        .into_iter()
        .filter_map(|group| {
            let node = group.strip_prefix(prefix)?.to_string();
            let member = ractor::pg::get_scoped_members(&scope, &group).into_iter().find(|c| {
                !matches!(c.get_status(), ActorStatus::Stopping | ActorStatus::Stopped)
                    && (c.get_id().is_local() || cluster.session_node_of(c).as_deref() == Some(node.as_str()))
            })?;
            Some((node, member))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The members a question to every node of a per-node group did not reach: those up that are
/// not in `asked` (they run none seen here), and those not up, with their status (observers and
/// this node are neither). Both sorted.
pub(crate) fn not_asked(cluster: &crate::Cluster, asked: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    let (mut unshared, mut down) = (Vec::new(), Vec::new());
    for member in cluster.members() {
        if member.name == cluster.name()
            || asked.contains(&member.name)
            || member.name.starts_with(crate::singleton::OBSERVER_PREFIX)
        {
            continue;
        }
        match member.status {
            crate::MemberStatus::Up => unshared.push(member.name.clone()),
            status => down.push((member.name.clone(), format!("{status:?}").to_lowercase())),
        }
    }
    unshared.sort();
    down.sort();
    (unshared, down)
}
