//! Process-wide limits both binaries set at start: as many open files as
//! the system allows this process (tunnels, origins and browsers each hold
//! one; the default soft limit of 1024 is soon reached).

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now
/// in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if now.maximum.is_some() && now.current != now.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: now.maximum,
                maximum: now.maximum,
            },
        )?;
    }
    let after = getrlimit(Resource::Nofile);
    Ok(after.current.unwrap_or(u64::MAX))
}
