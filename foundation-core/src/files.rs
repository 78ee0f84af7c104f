//! Files of a user's own: where state lives by default, directories created private (mode 0700
//! on Unix), and names nobody can guess. Another local user can then neither read a node's or
//! a run's state nor plant a file (or a symbolic link) where one will be written, which a fixed
//! name in the world-writable temporary directory allows.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Foundation keeps state by default: `$XDG_STATE_HOME/foundation`, else
/// `$HOME/.local/state/foundation`; with neither set, `foundation-state-UID` in the temporary
/// directory (created private like the others by [`create_private_dir`], which refuses it if
/// another user made it first).
pub fn state_root() -> PathBuf {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    from("XDG_STATE_HOME").or_else(|| from("HOME").map(|home| home.join(".local").join("state"))).map_or_else(
        || {
            let user = uid().map_or_else(|| "unknown".to_string(), |u| u.to_string());
            std::env::temp_dir().join(format!("foundation-state-{user}"))
        },
        |base| base.join("foundation"),
    )
}

/// This process's user id (the owner of `/proc/self`), where it can be read.
fn uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Creates `dir` and its missing parents, each new one readable by this user only (mode 0700
/// on Unix), and checks the path it will use (Unix, where `/proc/self` says who this process
/// is): every component that exists must be owned by this user or by root (a directory or a
/// symbolic link another user made, such as a `/tmp/foundation-state-0` created in advance to
/// catch root's state, is refused with an error), and `dir` itself, if it was there already
/// with group or other permissions, is made 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    // Checked before anything is made (nothing is created inside a planted directory) and
    // after (the path may have changed meanwhile).
    #[cfg(unix)]
    check_owned(dir)?;
    builder.create(dir)?;
    #[cfg(unix)]
    check_owned(dir)?;
    Ok(())
}

/// Every component of `dir` owned by this user or root; `dir` itself private.
#[cfg(unix)]
fn check_owned(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let Some(me) = uid() else { return Ok(()) };
    let mut path = PathBuf::new();
    for component in dir.components() {
        path.push(component);
        // Components not made yet end the walk (they will be made, and be this user's).
        let Ok(link) = std::fs::symlink_metadata(&path) else { break };
        for metadata in [link, std::fs::metadata(&path)?] {
            if metadata.uid() != me && metadata.uid() != 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{} belongs to another user (uid {}): refusing to keep state under it",
                        path.display(),
                        metadata.uid()
                    ),
                ));
            }
        }
    }
    let Ok(metadata) = std::fs::metadata(dir) else { return Ok(()) };
    if metadata.uid() == me && metadata.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// `prefix` followed by 32 hexadecimal digits from the kernel's random source: a name for a
/// temporary file or directory that no one can guess in advance.
pub fn unguessable_name(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    let from_kernel = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_kernel.is_err() {
        // No kernel source (not Linux): the clock-seeded generator, with the process id.
        for chunk in bytes.chunks_mut(8) {
            let value = crate::random::next_u64() ^ u64::from(std::process::id());
            chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_directories_are_private_and_names_differ() {
        let base = std::env::temp_dir().join(unguessable_name("foundation-files-test-"));
        let dir = base.join("a").join("b");
        create_private_dir(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for d in [&base, &base.join("a"), &dir] {
                assert_eq!(
                    std::fs::metadata(d).unwrap().permissions().mode() & 0o777,
                    0o700,
                    "{}",
                    d.display()
                );
            }
        }
        create_private_dir(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // One made open by an earlier version is made private.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            create_private_dir(&dir).unwrap();
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
        std::fs::remove_dir_all(&base).unwrap();
        let (a, b) = (unguessable_name("x-"), unguessable_name("x-"));
        assert!(a != b && a.len() == 34 && a.starts_with("x-"), "{a} {b}");
    }

    /// A directory another user made where state would go (say `/tmp/foundation-state-0`,
    /// made in advance to catch root's state) is refused. Needs the right to give a directory
    /// away (root, as under `.ci/run`); elsewhere it says so and checks nothing.
    #[cfg(unix)]
    #[test]
    fn a_path_through_another_users_directory_is_refused() {
        let planted = std::env::temp_dir().join(unguessable_name("foundation-planted-"));
        std::fs::create_dir(&planted).unwrap();
        if let Err(e) = std::os::unix::fs::chown(&planted, Some(54_321), None) {
            eprintln!("skipped: cannot give a directory to another user here ({e})");
            std::fs::remove_dir(&planted).unwrap();
            return;
        }
        let refused = create_private_dir(&planted.join("nodes").join("n1")).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied, "{refused}");
        assert!(refused.to_string().contains("belongs to another user (uid 54321)"), "{refused}");
        // A link another user planted is refused the same way, wherever it points.
        let link = std::env::temp_dir().join(unguessable_name("foundation-link-"));
        std::os::unix::fs::symlink(std::env::temp_dir(), &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(54_321), None).unwrap();
        assert!(create_private_dir(&link.join("state")).is_err(), "a planted link was followed");
        std::fs::remove_file(&link).unwrap();
        // Nothing was made inside the planted directory before it was refused.
        assert!(!planted.join("nodes").exists());
        std::fs::remove_dir_all(&planted).unwrap();
    }
}
