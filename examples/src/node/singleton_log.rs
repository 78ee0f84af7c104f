//! `foundation node --singleton-log FILE`: a singleton copy that writes down when it acts, so
//! that a test can check from the files of every node that two copies were never active at
//! once (the way Jepsen reads a history).
//!
//! Each copy appends `start NODE COPY UNIX_MS`, then every 20 ms `active NODE COPY UNIX_MS`
//! **only while its lease is valid** ([`foundation_cluster::singleton::lease_valid`], checked
//! before each write, as any copy should before acting), and `stop NODE COPY UNIX_MS`. `COPY`
//! tells copies apart (node, process and start time). Lines are short single `write`s on a file
//! opened for appending, so lines from several processes never interleave.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

/// How often a running copy acts (and writes that it did).
const ACT_EVERY: Duration = Duration::from_millis(20);

/// What a copy needs to write its history; cloned into each start.
#[derive(Clone)]
pub struct Copy {
    singleton: String,
    node: String,
    file: PathBuf,
}

impl Copy {
    pub fn new(singleton: &str, node: &str, file: &Path) -> Self {
        Copy { singleton: singleton.to_string(), node: node.to_string(), file: file.to_path_buf() }
    }

    /// The actor and its arguments, for a `ChildSpec`.
    pub fn actor(&self) -> (LoggedCopy, Copy) {
        (LoggedCopy, self.clone())
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// The copy's state: its id and the file.
pub struct Running {
    copy: Copy,
    id: String,
}

impl Running {
    /// Appends `what` stamped `at` (Unix ms).
    fn write(&self, what: &str, at: u128) {
        let line = format!("{what} {} {} {at}\n", self.copy.node, self.id);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.copy.file)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::error!(file = %self.copy.file.display(), error = %e, "cannot write the singleton log");
        }
    }
}

/// The singleton's actor.
pub struct LoggedCopy;

impl Actor for LoggedCopy {
    type Msg = ();
    type State = Running;
    type Arguments = Copy;

    async fn pre_start(&self, myself: ActorRef<()>, copy: Copy) -> Result<Running, ActorProcessingErr> {
        let id = format!("{}-{}-{}", copy.node, std::process::id(), unix_ms());
        let running = Running { copy, id };
        running.write("start", unix_ms());
        myself.send_interval(ACT_EVERY, || ());
        Ok(running)
    }

    async fn handle(&self, _: ActorRef<()>, _: (), running: &mut Running) -> Result<(), ActorProcessingErr> {
        // Act only under a valid lease: a copy that wakes from a pause past its lease must not.
        // The time is read before the check, so the line says a moment at which the lease was
        // valid even if writing it takes long on a loaded machine.
        let at = unix_ms();
        if foundation_cluster::singleton::lease_valid(&running.copy.singleton) {
            running.write("active", at);
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<()>, running: &mut Running) -> Result<(), ActorProcessingErr> {
        running.write("stop", unix_ms());
        Ok(())
    }
}
