//! Files of a user's own: where state lives by default, directories created private (mode 0700
//! on Unix), and names nobody can guess. Another local user can then neither read a node's or
//! a run's state nor plant a file (or a symbolic link) where one will be written, which a fixed
//! name in the world-writable temporary directory allows.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Foundation keeps state by default: `$XDG_STATE_HOME/foundation`, else
/// `$HOME/.local/state/foundation`; with neither set, `foundation-state-UID` in the temporary
/// directory (created private like the others by [`create_private_dir`]).
pub fn state_root() -> PathBuf {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    from("XDG_STATE_HOME").or_else(|| from("HOME").map(|home| home.join(".local").join("state"))).map_or_else(
        || std::env::temp_dir().join(format!("foundation-state-{}", uid())),
        |base| base.join("foundation"),
    )
}

/// This process's user id (from `/proc/self`), or 0 where it cannot be read.
fn uid() -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// Creates `dir` and its missing parents, each new one readable by this user only (mode 0700
/// on Unix). An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
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
        std::fs::remove_dir_all(&base).unwrap();
        let (a, b) = (unguessable_name("x-"), unguessable_name("x-"));
        assert!(a != b && a.len() == 34 && a.starts_with("x-"), "{a} {b}");
    }
}
