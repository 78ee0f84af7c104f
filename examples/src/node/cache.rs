//! `foundation node --shared-cache NAME` and the `cache-*` commands: this node's part of a
//! shared cache (the cluster cache tier), each key owned by one node.

use std::fmt;

use foundation_cluster::Cluster;
use foundation_cluster::shared_cache::SharedCacheHandle;
use serde::Serialize;

use super::reply::{Usage, emit};

const NEEDS: Option<&str> = Some("--shared-cache NAME");

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "cache-put",
        usage: "cache-put KEY VALUE",
        what: "store VALUE (text) under KEY on its owner",
        needs: NEEDS,
    },
    Usage { command: "cache-get", usage: "cache-get KEY", what: "read KEY from its owner", needs: NEEDS },
    Usage {
        command: "cache-owner",
        usage: "cache-owner KEY",
        what: "the node that owns KEY, and the nodes the cache is spread over",
        needs: NEEDS,
    },
];

/// A shared-cache command.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `cache-put KEY VALUE`.
    Put { key: String, value: String },
    /// `cache-get KEY`.
    Get { key: String },
    /// `cache-owner KEY`.
    Owner { key: String },
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        Some(Ok(match (op, args) {
            ("cache-put", [key, value @ ..]) => Command::Put { key: key.to_string(), value: value.join(" ") },
            ("cache-get", [key]) => Command::Get { key: key.to_string() },
            ("cache-owner", [key]) => Command::Owner { key: key.to_string() },
            ("cache-put" | "cache-get" | "cache-owner", _) => {
                return Some(Err(Usage::error(COMMANDS, op, &format!("wrong arguments for `{op}`"))));
            }
            _ => return None,
        }))
    }
}

/// What a shared-cache command printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[expect(clippy::enum_variant_names, reason = "a variant's name is its event's name, unique across features")]
pub enum Reply {
    /// KEY holds VALUE on its owner.
    CacheHit { key: String, value: String, owner: String },
    /// KEY is not cached; `error` if its owner could not be asked.
    CacheMiss { key: String, owner: String, error: Option<String> },
    /// KEY was stored on its owner.
    CacheStored { key: String, owner: String },
    /// KEY could not be stored.
    CachePutFailed { key: String, error: String },
    /// KEY's owner, and every node of the cache.
    CacheOwner { key: String, owner: String, nodes: Vec<String> },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::CacheHit { key, value, owner } => write!(f, "cache {key} = {value} (owner {owner})"),
            Reply::CacheMiss { key, owner, error: None } => write!(f, "cache {key}: miss (owner {owner})"),
            Reply::CacheMiss { key, error: Some(error), .. } => write!(f, "cache {key}: miss ({error})"),
            Reply::CacheStored { key, owner } => write!(f, "cache-put {key}: stored on {owner}"),
            Reply::CachePutFailed { key, error } => write!(f, "cache-put {key} failed: {error}"),
            Reply::CacheOwner { key, owner, nodes } => {
                write!(f, "cache-owner {key}: {owner} (nodes {})", nodes.join(","))
            }
        }
    }
}

/// Starts this node's part of the shared cache `name`, if asked.
pub async fn start(cluster: &Cluster, name: Option<&str>) -> anyhow::Result<Option<SharedCacheHandle>> {
    match name {
        Some(name) => Ok(Some(SharedCacheHandle::start(cluster, name, Default::default()).await?)),
        None => Ok(None),
    }
}

/// Runs a shared-cache command in the background and prints its outcome.
pub fn run(cache: &SharedCacheHandle, command: Command) {
    let cache = cache.clone();
    tokio::spawn(async move {
        emit(&match command {
            Command::Put { key, value } => {
                match cache.put(&key, value.into_bytes(), Default::default()).await {
                    Ok(owner) => Reply::CacheStored { key, owner },
                    Err(e) => Reply::CachePutFailed { key, error: e.to_string() },
                }
            }
            Command::Get { key } => match cache.try_get(&key).await {
                Ok(Some(found)) => Reply::CacheHit {
                    value: String::from_utf8_lossy(&found.value).into_owned(),
                    owner: found.owner,
                    key,
                },
                Ok(None) => Reply::CacheMiss { owner: cache.owner(&key), key, error: None },
                Err(e) => Reply::CacheMiss { owner: cache.owner(&key), key, error: Some(e.to_string()) },
            },
            Command::Owner { key } => {
                Reply::CacheOwner { owner: cache.owner(&key), nodes: cache.nodes(), key }
            }
        })
    });
}
