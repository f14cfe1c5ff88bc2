//! What both binaries do to their process first: keep key material out of
//! core dumps and away from other processes, create files for their owner
//! only, and allow as many open files as the system lets them (tunnels,
//! origins and browsers each hold one; the usual soft limit of 1024 is
//! soon reached).

use rustix::process::{
    getrlimit, set_dumpable_behavior, setrlimit, umask, DumpableBehavior, Resource, Rlimit,
};

/// Apply every setting below; returns, for the log, what could not be done.
pub fn harden() -> Vec<String> {
    let mut failed = Vec::new();
    private_files();
    if let Err(e) = keep_out_of_core_dumps() {
        failed.push(format!("cannot keep key material out of core dumps: {e}"));
    }
    if let Err(e) = raise_open_file_limit() {
        failed.push(format!("cannot raise the open-file limit: {e}"));
    }
    failed
}

/// No core file (`RLIMIT_CORE` 0) and not dumpable (`PR_SET_DUMPABLE` 0,
/// which also refuses ptrace and /proc/PID/mem to anyone but root).
pub fn keep_out_of_core_dumps() -> std::io::Result<()> {
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Create every file of this process readable by its user only (umask
/// 077): pads, their state, ledgers and journals hold keys or money, and
/// a umask of 022 would make them readable by every local user.
pub fn private_files() {
    umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit.
pub fn raise_open_file_limit() -> std::io::Result<()> {
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
    Ok(())
}

/// The open-file limit in force (the soft one); `None` when unlimited.
pub fn open_file_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}
